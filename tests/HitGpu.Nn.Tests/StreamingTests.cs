// Scoring a file larger than one chunk: streamed prediction equals whole-file prediction row for row, a bad
// row late in the file leaves no output, the CPU's one-launch prediction gives the layered path's bits, and
// the data checks a user expects of large files.
using HitGpu.Cli;
using static HitGpu.Nn.Tests.CliRunner;

namespace HitGpu.Nn.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class StreamingTests(AcceleratorFixture fixture) : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-stream-").FullName;
    private static readonly Lazy<SongTable> Songs = new(SongData.LoadEmbedded90s);

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static readonly Lazy<HitModel> Model = new(() =>
    {
        using var device = ComputeDevice.Open(AcceleratorKind.Cpu);
        return Trainer.Train(device, Songs.Value, TrainingOptions.Study with { Epochs = 2, EnsembleSize = 2, Inputs = InputTransform.Quantile }).Model;
    });

    /// <summary>The embedded songs, repeated with a different tempo each round, as one file of n rows.</summary>
    private string BigFile(int rows)
    {
        var s = Songs.Value;
        var features = new float[rows * SongData.FeatureCount];
        int tempo = Array.IndexOf(SongData.FeatureNames, "tempo");
        for (int r = 0; r < rows; r++)
        {
            Array.Copy(s.Features, (r % s.Count) * SongData.FeatureCount, features, r * SongData.FeatureCount, SongData.FeatureCount);
            features[r * SongData.FeatureCount + tempo] += r / s.Count;
        }
        var big = new SongTable
        {
            Source = "big", Features = features,
            Tracks = Enumerable.Range(0, rows).Select(r => s.Tracks![r % s.Count]).ToArray(),
            Artists = Enumerable.Range(0, rows).Select(r => s.Artists![r % s.Count]).ToArray(),
        };
        string path = Path.Combine(folder, "big.csv");
        SongData.WriteCsv(big, path);
        return path;
    }

    [Fact]
    public void Predict_streams_a_file_of_several_chunks_in_input_order_with_the_whole_files_probabilities()
    {
        int rows = PredictCommand.ChunkRows + 4321;
        string data = BigFile(rows), model = Path.Combine(folder, "m.hitgpu"), output = Path.Combine(folder, "p.csv");
        ModelFile.Save(Model.Value, model);
        var (code, printed, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", data, "--out", output);
        Assert.True(code == 0, error);
        Assert.Equal($"{rows} predictions written to {output}\n", printed);
        var whole = Model.Value.PredictProbabilities(fixture.Device, SongData.Load(data, requireTarget: false));
        var lines = File.ReadAllLines(output);
        Assert.Equal("track,artist,probability,prediction", lines[0]);
        Assert.Equal(rows + 1, lines.Length);
        var songs = SongData.Load(data, requireTarget: false);
        for (int i = 0; i < rows; i += 997)
        {
            var fields = CsvText.Split(lines[i + 1]);
            Assert.Equal(songs.Tracks![i], fields[0]);
            Assert.Equal(whole[i].ToString("F6", System.Globalization.CultureInfo.InvariantCulture), fields[2]);
            Assert.Equal(whole[i] > 0.5f ? "Hit" : "Not a Hit", fields[3]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(100_000)]
    public void The_streaming_library_call_gives_the_whole_tables_probabilities_at_any_chunk_size(int chunkRows)
    {
        string data = Path.Combine(folder, "songs.csv");
        var songs = Songs.Value.Subset(Enumerable.Range(0, 2345).ToArray());
        SongData.WriteCsv(songs, data);
        var whole = Model.Value.PredictProbabilities(fixture.Device, songs);
        var chunks = Model.Value.PredictChunks(fixture.Device, SongData.ReadAhead(SongData.ReadChunks(data, chunkRows))).ToList();
        Assert.All(chunks.SkipLast(1), c => Assert.Equal(chunkRows, c.Songs.Count));
        Assert.Equal(whole, chunks.SelectMany(c => c.Probabilities));
        Assert.Equal(songs.Tracks, chunks.SelectMany(c => c.Songs.Tracks!));
    }

    [Fact]
    public void A_bad_row_late_in_a_large_file_stops_predict_with_its_line_and_leaves_no_output()
    {
        int rows = PredictCommand.ChunkRows + 500;
        string data = BigFile(rows), model = Path.Combine(folder, "m.hitgpu"), output = Path.Combine(folder, "p.csv");
        ModelFile.Save(Model.Value, model);
        var lines = File.ReadAllLines(data);
        var fields = CsvText.Split(lines[rows - 3]);
        fields[Array.IndexOf(CsvText.Split(lines[0]), "energy")] = "loud";
        lines[rows - 3] = CsvText.Join(fields);
        File.WriteAllLines(data, lines);
        var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", data, "--out", output);
        Assert.Equal(HitGpuCli.BadInput, code);
        Assert.Contains($"big.csv:{rows - 2}:", error);
        Assert.Contains("energy is not a number: 'loud'", error);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(folder, "*.tmp"));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(1027)]
    public void The_CPU_epoch_prediction_gives_the_layered_paths_bits(int rows)
    {
        // Rows in groups of four and one at a time, each sum added in the layered dense kernel's order.
        fixture.RequireCpuEpoch();
        var layout = ParameterLayout.ForClassifier(15, [16, 8]);
        var rng = new Random(rows);
        var parameters = Tolerance.Random(rng, layout.Count, 0.5f);
        var x = Tolerance.Random(rng, rows * 15, 2f);
        using var features = fixture.Device.Upload<float>(x, rows, 15);
        float[] Predicted(TrainingPath path)
        {
            using var network = new Network(fixture.Device, layout, 64, path);
            network.Reset(parameters);
            var p = new float[rows];
            network.PredictProbabilities(features, rows, p);
            return p;
        }
        var layered = Predicted(TrainingPath.Layered);
        Assert.Equal(layered, Predicted(TrainingPath.CpuEpoch));
        // And both are the reference's: with every label 1, a sample's loss is -log p.
        var loss = new float[rows];
        NetworkReference.Step<float>(layout, parameters, x, Enumerable.Repeat(1f, rows).ToArray(), rows, [], StepSettings.Default, 0, loss);
        for (int i = 0; i < rows; i++)
            Tolerance.Close(Math.Exp(-loss[i]), layered[i], $"probability {i}", 1e-5, 1e-4);
    }

    [Fact]
    public void Predict_counts_the_songs_far_outside_the_training_range()
    {
        string model = Path.Combine(folder, "m.hitgpu"), data = Path.Combine(folder, "odd.csv"), output = Path.Combine(folder, "p.csv");
        ModelFile.Save(Model.Value, model);
        var songs = Songs.Value.Subset(Enumerable.Range(0, 50).ToArray());
        int tempo = Array.IndexOf(SongData.FeatureNames, "tempo"), loudness = Array.IndexOf(SongData.FeatureNames, "loudness");
        songs.Features[3 * SongData.FeatureCount + tempo] = 5000f;       // far above any song's tempo
        songs.Features[7 * SongData.FeatureCount + loudness] = -500f;    // far below
        songs.Features[9 * SongData.FeatureCount + tempo] = 250f;        // above the range, but not far
        SongData.WriteCsv(songs, data);
        var (code, printed, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", data, "--out", output);
        Assert.True(code == 0, error);
        Assert.Equal($"50 predictions written to {output} (2 songs have a feature far outside the training range)\n", printed);
        Assert.Equal(2, Model.Value.Preprocessing.Statistics!.CountFarOutside(songs.Features));
    }
}

/// <summary>The checks of the data a user expects before a model is trained on it.</summary>
[Collection(AcceleratorCollection.Name)]
public sealed class DataCheckTests(AcceleratorFixture fixture) : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-checks-").FullName;
    private static readonly Lazy<SongTable> Songs = new(SongData.LoadEmbedded90s);

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public void A_target_of_one_class_only_is_refused_for_training()
    {
        var songs = Songs.Value;
        var hits = songs.Subset(Enumerable.Range(0, songs.Count).Where(r => songs.Labels![r] == 1f).Take(300).ToArray());
        var e = Assert.Throws<InputException>(() => Trainer.Train(fixture.Device, hits, TrainingOptions.Study with { Epochs = 1 }));
        Assert.Equal("embedded:dataset-of-90s.csv: every song's target is 1: training needs hits and songs that are not hits", e.Message);
    }

    /// <summary>200 songs, then copies: rows 3 and 7 again (same features and target), and row 11 under a new title.</summary>
    private static SongTable WithCopies()
    {
        var songs = Songs.Value.Subset([.. Enumerable.Range(0, 200), 3, 7, 11]);
        return new SongTable
        {
            Source = "copies", Features = songs.Features, Labels = songs.Labels,
            Tracks = [.. songs.Tracks!.Take(202), "Another Title"], Artists = songs.Artists,
        };
    }

    [Fact]
    public void Songs_that_appear_twice_are_counted_and_those_across_the_parts_too()
    {
        var data = WithCopies();
        var repeats = Duplicates.Repeats(data);
        Assert.Equal([200, 201, 202], Enumerable.Range(0, data.Count).Where(r => repeats[r]));
        // Across parts, by brute force: a validation or test row equal (features and target) to an earlier part's row.
        var split = Split.Stratified(data.Labels!, seed: 2);
        bool Same(int a, int b) => data.Labels![a] == data.Labels[b] &&
            data.Features.AsSpan(a * SongData.FeatureCount, SongData.FeatureCount).SequenceEqual(data.Features.AsSpan(b * SongData.FeatureCount,
                SongData.FeatureCount));
        int expected = split.Validation.Count(v => split.Train.Any(t => Same(v, t)))
            + split.Test.Count(t => split.Train.Concat(split.Validation).Any(u => Same(t, u)));
        Assert.Equal(expected, Duplicates.AcrossParts(data, split));
    }

    [Fact]
    public void A_uri_seen_before_marks_a_duplicate_even_with_other_values()
    {
        string path = Path.Combine(folder, "uris.csv");
        var lines = System.Text.Encoding.UTF8.GetString(SongData.Embedded90sBytes()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Take(30).ToList();
        var copy = CsvText.Split(lines[5]);
        copy[CsvText.Split(lines[0]).ToList().IndexOf("tempo")] = "99.5"; // other values, same uri
        lines.Add(CsvText.Join(copy));
        File.WriteAllLines(path, lines);
        var repeats = Duplicates.Repeats(SongData.Load(path));
        Assert.Equal([29], Enumerable.Range(0, repeats.Length).Where(r => repeats[r]));
    }

    [Fact]
    public void Drop_duplicates_keeps_the_first_of_each_and_no_part_repeats_another()
    {
        var data = WithCopies();
        var options = TrainingOptions.Study with { Epochs = 1, Seed = 2 };
        var warnings = new List<string>();
        var kept = Trainer.Train(fixture.Device, data, options with { DropDuplicates = true }, onWarning: warnings.Add);
        Assert.Equal(new DuplicateReport(3, 0, 3), kept.Duplicates);
        Assert.Equal(200, kept.TrainRows + kept.ValidationRows + kept.TestRows);
        Assert.DoesNotContain(200, kept.Split.Train.Concat(kept.Split.Validation).Concat(kept.Split.Test));
        Assert.Equal(0, Duplicates.AcrossParts(data, kept.Split));
        Assert.Contains("were dropped before splitting", Assert.Single(warnings));

        var notDropped = Trainer.Train(fixture.Device, data, options);
        Assert.Equal(203, notDropped.TrainRows + notDropped.ValidationRows + notDropped.TestRows);
        Assert.Equal(3, notDropped.Duplicates.Repeated);
    }

    [Fact]
    public void Files_written_back_keep_the_uri_so_their_duplicates_are_found_again()
    {
        // The embedded file repeats 28 songs, 2 of them only by uri (the same song, other values): written back
        // (as --save-splits does) and read again, all 28 are found.
        string path = Path.Combine(folder, "songs.csv");
        SongData.WriteCsv(Songs.Value, path);
        Assert.Contains(",uri,", File.ReadLines(path).First());
        var again = SongData.Load(path);
        Assert.Equal(Songs.Value.Uris, again.Uris);
        Assert.Equal(28, Duplicates.Repeats(again).Count(r => r));
        Assert.Equal(Duplicates.Repeats(Songs.Value), Duplicates.Repeats(again));
        Assert.Null(SongData.Load(path, keepNames: false).Uris); // the text only with the names; the keys always
    }

    [Fact]
    public void The_same_file_given_twice_is_refused()
    {
        string a = Path.Combine(folder, "a.csv"), b = Path.Combine(folder, "b.csv"), link = Path.Combine(folder, "link.csv");
        SongData.WriteCsv(Songs.Value.Subset(Enumerable.Range(0, 50).ToArray()), a);
        File.Copy(a, b);
        File.CreateSymbolicLink(link, a);
        Assert.Contains("given twice", Assert.Throws<InputException>(() => SongData.LoadMany([a, a])).Message);
        Assert.Contains("given twice", Assert.Throws<InputException>(() => SongData.LoadMany([a, link])).Message);
        Assert.Contains("has the same bytes as", Assert.Throws<InputException>(() => SongData.LoadMany([a, b])).Message);
        Assert.Contains("given twice", Assert.Throws<InputException>(() => SongData.LoadMany([a, folder])).Message); // a, and a again inside the folder
    }
}
