// What the README's "Reliability" section promises, one named test per case that a new user hit: nothing lost
// through links, devices or a full disk; runs that would fail at their end fail at their start; no silent
// wrong answers; the input formats people have. The CLI runs in-process (CliRunner) unless the case is about
// the process itself (standard output, a closed pipe), where it runs as the tool does, through dotnet.
using System.Diagnostics;
using System.Text;
using static HitGpu.Nn.Tests.CliRunner;

namespace HitGpu.Nn.Tests;

[Collection(AcceleratorCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")] // links, devices, FIFOs, mounts and modes as Linux has them
public sealed class ReliabilityTests(AcceleratorFixture fixture) : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-reliability-").FullName;
    private readonly List<string> mounts = [];
    private static readonly Lazy<byte[]> Model = new(() =>
    {
        using var device = ComputeDevice.Open(AcceleratorKind.Cpu);
        var songs = SongData.LoadEmbedded90s().Subset(Enumerable.Range(0, 400).ToArray());
        string path = Path.Combine(Path.GetTempPath(), $"hitgpu-reliability-{Guid.NewGuid():N}.hitgpu");
        ModelFile.Save(Trainer.Train(device, songs, TrainingOptions.Study with { Epochs = 1, Hidden = [8] }).Model, path);
        var bytes = File.ReadAllBytes(path);
        File.Delete(path);
        return bytes;
    });
    private static readonly string[] Lines = Encoding.UTF8.GetString(SongData.Embedded90sBytes()).Split('\n', StringSplitOptions.RemoveEmptyEntries);

    public void Dispose()
    {
        foreach (var mount in mounts)
            Exec("umount", mount);
        Directory.Delete(folder, recursive: true);
    }

    private string InFolder(string name) => Path.Combine(folder, name);

    /// <summary>A model file and a CSV of 200 songs in the test's folder.</summary>
    private (string Model, string Songs) Files()
    {
        string model = InFolder("model.hitgpu"), songs = InFolder("songs.csv");
        File.WriteAllBytes(model, Model.Value);
        File.WriteAllText(songs, string.Join("\n", Lines.Take(201)) + "\n");
        return (model, songs);
    }

    private static (int Code, string Output) Exec(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in arguments)
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output);
    }

    /// <summary>The tool as a process (dotnet hitgpu.dll), for what only a process shows: its standard streams.</summary>
    private static Process Tool(params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hitgpu.dll"));
        foreach (var a in arguments)
            start.ArgumentList.Add(a);
        return Process.Start(start)!;
    }

    /// <summary>A small tmpfs (as root, where mounting is allowed), or the test is skipped, saying why.</summary>
    private string Mounted(string name, string options)
    {
        string path = InFolder(name);
        Directory.CreateDirectory(path);
        var (code, output) = Exec("mount", "-t", "tmpfs", "-o", options, "tmpfs", path);
        if (code != 0)
            Assert.Skip($"a tmpfs cannot be mounted here ({output.Trim()}): the case needs one");
        mounts.Add(path);
        return path;
    }

    private static void OneErrorLine(string error, string contains)
    {
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith("hitgpu: warning", StringComparison.Ordinal)).ToArray();
        Assert.True(lines.Length == 1, $"expected one error line, got: {error}");
        Assert.StartsWith("hitgpu: error: ", lines[0]);
        Assert.True(lines[0].Contains(contains, StringComparison.Ordinal), $"expected '{contains}' in: {lines[0]}");
    }

    // ---- data lost ----

    [Fact]
    public void An_output_reaching_an_input_through_a_link_in_a_folder_of_its_path_is_refused()
    {
        var (model, songs) = Files();
        File.CreateSymbolicLink(InFolder("linkdir"), folder);
        var modelBytes = File.ReadAllBytes(model);
        var songBytes = File.ReadAllBytes(songs);
        var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", InFolder("linkdir/songs.csv"));
        Assert.Equal(2, code);
        OneErrorLine(error, "would replace");
        (code, _, error) = Run("export", "--model", model, "--onnx", InFolder("linkdir/model.hitgpu"));
        Assert.Equal(2, code);
        OneErrorLine(error, "would replace");
        // train --save-splits into a folder that is the data's: train.csv is the data.
        string train = InFolder("train.csv");
        File.Copy(songs, train);
        (code, _, error) = Run("train", "--accelerator", "cpu", "--epochs", "1", "--ensemble", "1", "--hidden", "8", "--data", train,
            "--save-splits", InFolder("linkdir"));
        Assert.Equal(2, code);
        OneErrorLine(error, "would replace");
        Assert.Equal(modelBytes, File.ReadAllBytes(model));
        Assert.Equal(songBytes, File.ReadAllBytes(songs));
        Assert.Equal(songBytes, File.ReadAllBytes(train));
    }

    [Fact]
    public void A_hard_link_of_an_input_is_the_input_and_a_hard_linked_output_is_never_split()
    {
        var (model, songs) = Files();
        string hard = InFolder("hard.csv");
        Assert.Equal(0, Exec("ln", songs, hard).Code);
        var before = File.ReadAllBytes(songs);
        var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", hard);
        Assert.Equal(2, code);
        OneErrorLine(error, "hard links");
        Assert.Equal(before, File.ReadAllBytes(songs));
        Assert.True(SongData.Load(hard).Count == 200);
    }

    [Fact]
    public async Task A_character_device_and_a_FIFO_as_outputs_are_written_through_never_replaced()
    {
        var (model, songs) = Files();
        var (code, output, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", "/dev/null");
        Assert.True(code == 0, error);
        Assert.Contains("200 predictions written to /dev/null", output);
        Assert.Equal(FileSystem.Kind.CharacterDevice, FileSystem.Stat("/dev/null")!.Value.Kind);

        string fifo = InFolder("fifo");
        Assert.Equal(0, Exec("mkfifo", fifo).Code);
        var reader = Task.Run(() => File.ReadAllText(fifo)); // a FIFO's writer waits for its reader
        (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", fifo);
        Assert.True(code == 0, error);
        string written = await reader.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        Assert.Equal(201, written.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Equal(FileSystem.Kind.Fifo, FileSystem.Stat(fifo)!.Value.Kind);
    }

    [Fact]
    public void Standard_output_named_as_a_file_or_as_dash_gets_the_predictions()
    {
        var (model, songs) = Files();
        foreach (var name in new[] { "/dev/stdout", "-" })
        {
            using var tool = Tool("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", name);
            string stdout = tool.StandardOutput.ReadToEnd(), stderr = tool.StandardError.ReadToEnd();
            tool.WaitForExit();
            Assert.True(tool.ExitCode == 0, stderr);
            Assert.StartsWith("track,artist,probability,prediction\n", stdout);
            Assert.Equal(201, stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length); // the predictions alone: no "written to" line among them
        }
    }

    [Fact]
    public void The_model_cannot_go_to_standard_output_by_any_of_its_names()
    {
        foreach (var name in new[] { "-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1" })
        {
            var (code, output, error) = Run("train", "--accelerator", "cpu", "--epochs", "1", "--out", name);
            Assert.Equal(2, code);
            OneErrorLine(error, "the model cannot go to standard output");
            Assert.DoesNotContain("epoch", output);
        }
    }

    [Fact]
    public void Replacing_an_output_keeps_its_mode_and_owner()
    {
        var (model, songs) = Files();
        string output = InFolder("out.csv");
        File.WriteAllText(output, "old\n");
        File.SetUnixFileMode(output, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        bool root = Environment.UserName == "root";
        if (root)
            Assert.Equal(0, Exec("chown", "65534:65534", output).Code);
        var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", output);
        Assert.True(code == 0, error);
        Assert.StartsWith("track,", File.ReadAllText(output));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(output));
        if (root)
            Assert.Equal(65534u, FileSystem.Stat(output)!.Value.Owner);
    }

    // ---- runs lost after the work was done ----

    [Fact]
    public void An_output_folder_that_cannot_be_written_fails_before_training()
    {
        string readOnly = Mounted("read-only", "ro,size=64k");
        var (code, output, error) = Run("train", "--accelerator", "cpu", "--epochs", "1", "--out", Path.Combine(readOnly, "m.hitgpu"));
        Assert.Equal(2, code);
        OneErrorLine(error, "cannot write here (Read-only file system)");
        Assert.DoesNotContain("epoch", output); // refused before the first epoch
        (code, output, error) = Run("train", "--accelerator", "cpu", "--epochs", "1", "--save-splits", Path.Combine(readOnly, "splits"));
        Assert.Equal(2, code);
        OneErrorLine(error, "cannot create this folder");
        Assert.DoesNotContain("epoch", output);
    }

    [Fact]
    public void A_legal_237_character_file_name_is_written()
    {
        var (model, songs) = Files();
        string output = InFolder(new string('a', 233) + ".csv");
        var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", output);
        Assert.True(code == 0, error);
        Assert.True(File.Exists(output));
        Assert.Empty(Directory.GetFiles(folder, "*.tmp"));
    }

    [Fact]
    public void A_file_name_longer_than_file_systems_take_is_refused_before_the_work()
    {
        var (model, songs) = Files();
        var (code, output, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs, "--out", InFolder(new string('b', 252) + ".csv"));
        Assert.Equal(2, code);
        OneErrorLine(error, "256 bytes long; file systems take 255 at most");
        Assert.Equal("", output);
    }

    [Fact]
    public void A_full_disk_writes_none_of_a_trainings_outputs_and_says_so_in_one_line()
    {
        string full = Mounted("full", "size=200k");
        var (code, _, error) = Run("train", "--study", "--accelerator", "cpu", "--epochs", "1",
            "--out", Path.Combine(full, "m.hitgpu"), "--save-splits", Path.Combine(full, "splits"), "--plot", Path.Combine(full, "plots"));
        Assert.Equal(2, code);
        OneErrorLine(error, "No space left on device");
        Assert.Contains("nothing was written", error);
        Assert.Empty(Directory.EnumerateFileSystemEntries(full)); // no model, no part of the splits, no plot, no temporary file
        (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", Files().Model, "--data", Files().Songs, "--out", "/dev/full");
        Assert.Equal(2, code);
        OneErrorLine(error, "/dev/full: cannot write (No space left on device)");
    }

    [Fact]
    public void A_device_named_as_the_accuracy_report_is_written_through_and_never_read()
    {
        // Found by the fuzzing: the notes kept from an earlier report were read from /dev/full, which never ends.
        string decades = InFolder("decades");
        Directory.CreateDirectory(decades);
        File.WriteAllText(Path.Combine(decades, "dataset-of-90s.csv"), string.Join("\n", Lines.Take(201)) + "\n");
        var (code, _, error) = Run("accuracy", "--accelerator", "cpu", "--data-dir", decades, "--decades", "90s", "--seeds", "0",
            "--epochs", "1", "--ensemble", "1", "--out", "/dev/full");
        Assert.Equal(2, code);
        OneErrorLine(error, "/dev/full: cannot write (No space left on device)");
    }

    // ---- silent wrong answers ----

    [Fact]
    public void One_predictor_shared_by_eight_threads_gives_every_call_its_own_answer()
    {
        var model = ModelFile.Decode(Model.Value, "model");
        var songs = SongData.LoadEmbedded90s();
        var parts = Enumerable.Range(0, 16).Select(i => songs.Subset(Enumerable.Range(i * 37, 20 + i * 7).ToArray())).ToArray();
        var expected = parts.Select(p => model.PredictProbabilities(fixture.Device, p)).ToArray();
        using var predictor = new Predictor(fixture.Device, model);
        var wrong = 0;
        Parallel.For(0, 8 * 200, new ParallelOptions { MaxDegreeOfParallelism = 8 }, call =>
        {
            int part = call % parts.Length;
            if (!predictor.Predict(parts[part]).AsSpan().SequenceEqual(expected[part]))
                Interlocked.Increment(ref wrong);
        });
        Assert.Equal(0, wrong);
    }

    [Fact]
    public void Two_trainings_in_one_process_stay_independent()
    {
        var songs = SongData.LoadEmbedded90s();
        var options = TrainingOptions.Study with { Epochs = 2 };
        var alone = new[] { 0, 1 }.Select(seed => Trainer.Train(fixture.Device, songs, options with { Seed = seed }).Model.Networks[0]).ToArray();
        var together = new float[2][];
        Parallel.For(0, 2, seed =>
        {
            using var device = ComputeDevice.Open(AcceleratorKind.Cpu);
            together[seed] = Trainer.Train(device, songs, options with { Seed = seed }).Model.Networks[0];
        });
        Assert.Equal(alone[0], together[0]);
        Assert.Equal(alone[1], together[1]);
    }

    [Fact]
    public void A_loss_that_grows_by_orders_of_magnitude_is_divergence_like_NaN()
    {
        string model = InFolder("diverged.hitgpu");
        var (code, _, error) = Run("train", "--study", "--accelerator", "cpu", "--epochs", "3", "--learning-rate", "1e10", "--out", model);
        Assert.Equal(1, code);
        Assert.Contains("hitgpu: warning: training loss grew to", error);
        Assert.Contains("kept the initial weights", error);
        var kept = ModelFile.Load(model);
        Assert.Equal(kept.Layout.Initialize(0), kept.Networks[0]); // the last good weights: none were better than the start
    }

    [Fact]
    public void Validation_accuracy_collapsing_to_one_class_is_divergence()
    {
        // 100 validation songs, 60 hits: 60% is what predicting "hit" for all gives.
        var progress = new NetworkProgress(TrainingOptions.Study, [1f], initialLoss: 0.69, hitShare: 0.6, validationRows: 100);
        Assert.True(progress.GoesOn(1, 0.6, 0.6, 0.70, () => [2f]));
        Assert.True(progress.GoesOn(2, 0.6, 0.6, 0.75, () => [3f]));
        Assert.False(progress.GoesOn(3, 0.7, 0.7, 0.60, () => [4f]));
        var outcome = progress.Outcome();
        Assert.True(outcome.Diverged);
        Assert.Contains("predicted one class", outcome.StoppedEarly);
        Assert.Equal([3f], outcome.Parameters);
        // An accuracy that only equals one class's share is no collapse when the predictions are not all one class.
        var mixed = new NetworkProgress(TrainingOptions.Study, [1f], 0.69, 0.6, 100);
        Assert.True(mixed.GoesOn(1, 0.6, 0.6, 0.70, () => [2f]));
        Assert.True(mixed.GoesOn(2, 0.6, 0.6, 0.60, () => [3f], predictsOneClass: () => false));
        // Overfitting is no divergence: validation loss a few times its lowest, training loss far below its start.
        var overfit = new NetworkProgress(TrainingOptions.Study, [1f], 0.69, 0.5, 100);
        Assert.True(overfit.GoesOn(1, 0.3, 0.4, 0.80, () => [2f]));
        Assert.True(overfit.GoesOn(2, 0.0068, 0.936, 0.75, () => [3f]));
        Assert.False(overfit.Outcome().Diverged);
        // At the start, one class is no collapse: a network may begin there.
        Assert.True(new NetworkProgress(TrainingOptions.Study, [1f], 0.69, 0.6, 100).GoesOn(1, 0.6, 0.6, 0.60, () => [2f]));
    }

    [Fact]
    public void Text_that_is_not_UTF8_is_refused_with_its_line_or_read_as_the_encoding_named()
    {
        var fields = CsvText.Split(Lines[1]);
        fields[0] = "Caf\u00e9";
        var latin1 = Encoding.Latin1.GetBytes(Lines[0] + "\n" + CsvText.Join(fields) + "\n");
        var e = Assert.Throws<InputException>(() => SongReader.Over(latin1, "songs.csv").ReadChunk(10));
        Assert.StartsWith("songs.csv:2: not UTF-8 text", e.Message);
        // The library names its own way to say the encoding; the CLI its flag.
        Assert.EndsWith("if the file is Latin-1 (ISO 8859-1), say so with CsvEncoding.Latin1", e.Message);
        Assert.DoesNotContain("--", e.Message);
        var (model, _) = Files();
        File.WriteAllBytes(InFolder("latin1.csv"), latin1);
        var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", InFolder("latin1.csv"));
        Assert.Equal(2, code);
        OneErrorLine(error, "if the file is Latin-1 (ISO 8859-1), say so with --encoding latin1");
        Assert.DoesNotContain("CsvEncoding", error);
        using var reader = SongReader.Over(latin1, "songs.csv", format: new CsvFormat(Encoding: CsvEncoding.Latin1));
        Assert.Equal("Caf\u00e9", reader.ReadChunk(10)!.Tracks![0]);
    }

    [Fact]
    public void A_tiny_validation_or_test_part_is_warned_about()
    {
        string seven = InFolder("seven.csv");
        File.WriteAllText(seven, string.Join("\n", Lines.Take(8)) + "\n");
        var (code, _, error) = Run("train", "--accelerator", "cpu", "--epochs", "1", "--ensemble", "1", "--hidden", "4", "--data", seven);
        Assert.Equal(0, code);
        Assert.Contains($"fewer than {Trainer.SmallPart} songs", error);
    }

    // ---- crashes and unclear lines ----

    [Theory]
    [InlineData("100000,100000", "more than 2^31 parameters")]
    [InlineData("20000,20000", "the network needs about")]
    public void A_network_too_large_is_refused_in_one_line_before_anything_is_allocated(string hidden, string message)
    {
        var (code, _, error) = Run("train", "--accelerator", "cpu", "--epochs", "1", "--hidden", hidden);
        Assert.Equal(2, code);
        OneErrorLine(error, message);
    }

    [Fact]
    public void A_file_that_is_not_a_model_is_named_for_what_it_is()
    {
        var (model, songs) = Files();
        string onnx = InFolder("model.onnx"), empty = InFolder("empty.hitgpu");
        Assert.Equal(0, Run("export", "--model", model, "--onnx", onnx).Code);
        File.WriteAllBytes(empty, []);
        foreach (var (path, says) in new[] { (onnx, "ONNX model"), (songs, "CSV file"), (folder, "is a folder"), (empty, "the file is empty") })
        {
            var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", path, "--data", songs);
            Assert.Equal(2, code);
            OneErrorLine(error, says);
        }
        // What a file or folder should have been: in the CLI, its flags; from the library, its own calls.
        OneErrorLine(Run("predict", "--accelerator", "cpu", "--model", songs, "--data", songs).Error,
            "it looks like a CSV file (songs go to --data; --model takes a .hitgpu file)");
        OneErrorLine(Run("predict", "--accelerator", "cpu", "--model", folder, "--data", songs).Error,
            "is a folder, not a model file (a .hitgpu file that hitgpu train --out wrote)");
        var csv = Assert.Throws<InputException>(() => ModelFile.Load(songs));
        Assert.Contains("it looks like a CSV file (songs go to SongData.Load; ModelFile.Load takes a .hitgpu file)", csv.Message);
        var inFolder = Assert.Throws<InputException>(() => ModelFile.Load(folder));
        Assert.EndsWith("is a folder, not a model file (a .hitgpu file that ModelFile.Save wrote)", inFolder.Message);
        OneErrorLine(Run("predict", "--accelerator", "cpu", "--model", onnx, "--data", songs).Error,
            "it looks like an ONNX model (hitgpu export writes those for other runtimes; --model reads HitGpu's own .hitgpu files)");
        Assert.Contains("it looks like an ONNX model (OnnxExport.Save writes those for other runtimes; ModelFile.Load reads HitGpu's own .hitgpu files)",
            Assert.Throws<InputException>(() => ModelFile.Load(onnx)).Message);
        Assert.All([csv.Message, inFolder.Message], message => Assert.DoesNotContain("--", message));
    }

    [Theory]
    [InlineData("--seed", "2147483648", "--seed takes a whole number from -2147483648 to 2147483647, got '2147483648'")]
    [InlineData("--learning-rate", "fast", "--learning-rate takes a number")]
    public void An_option_value_out_of_its_range_is_named_with_its_range(string option, string value, string message)
    {
        var (code, _, error) = Run("train", "--accelerator", "cpu", option, value);
        Assert.Equal(2, code);
        OneErrorLine(error, message);
    }

    [Fact]
    public void A_line_longer_than_the_cap_is_refused_at_its_line_unread()
    {
        var (model, _) = Files();
        var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", "/dev/zero");
        Assert.Equal(2, code);
        OneErrorLine(error, $"/dev/zero:1: line longer than {SongReader.MaxLineBytes} bytes");
    }

    // ---- what people have ----

    [Fact]
    public void A_gzip_compressed_file_reads_as_the_file_does_also_streaming()
    {
        var (model, songs) = Files();
        string gz = songs + ".gz";
        using (var target = File.Create(gz))
        using (var gzip = new System.IO.Compression.GZipStream(target, System.IO.Compression.CompressionLevel.Optimal))
            gzip.Write(File.ReadAllBytes(songs));
        Assert.Equal(SongData.Load(songs).Features, SongData.Load(gz).Features);
        var plain = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs);
        var compressed = Run("predict", "--accelerator", "cpu", "--model", model, "--data", gz);
        Assert.Equal(0, compressed.Code);
        Assert.Equal(plain.Output, compressed.Output);
    }

    [Fact]
    public void A_damaged_gzip_file_is_refused_in_one_line()
    {
        var (model, songs) = Files();
        string gz = songs + ".gz";
        using (var target = File.Create(gz))
        using (var gzip = new System.IO.Compression.GZipStream(target, System.IO.Compression.CompressionLevel.Optimal))
            gzip.Write(File.ReadAllBytes(songs));
        var bytes = File.ReadAllBytes(gz);
        bytes[^6] ^= 0xFF; // the trailer's checksum
        File.WriteAllBytes(gz, bytes);
        var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", gz);
        Assert.Equal(2, code);
        OneErrorLine(error, "the compressed data is damaged");
    }

    [Fact]
    public void Lines_ended_by_a_lone_carriage_return_are_lines_in_a_file_over_the_line_cap()
    {
        // Old Mac exports: CR alone ends a line. A file of them longer than the line cap reads as its lines do.
        string cr = InFolder("cr.csv");
        var body = Enumerable.Range(0, 8000).Select(i => Lines[1 + i % 5000]);
        File.WriteAllText(cr, Lines[0] + "\r" + string.Join("\r", body) + "\r");
        Assert.True(new FileInfo(cr).Length > SongReader.MaxLineBytes);
        Assert.Equal(8000, SongData.Load(cr).Count);
    }

    [Theory]
    [InlineData(";", null)]
    [InlineData("\t", null)]
    [InlineData(";", "semicolon")]
    public void A_semicolon_or_tab_separated_file_is_read_by_its_separator(string separator, string? named)
    {
        var (model, songs) = Files();
        string other = InFolder("other.csv");
        static string Field(string f) => f.Contains('"') || f.Contains(',') || f.Contains(';') || f.Contains('\t') ? $"\"{f.Replace("\"", "\"\"")}\"" : f;
        File.WriteAllLines(other, File.ReadAllLines(songs).Select(line => string.Join(separator, CsvText.Split(line).Select(Field))));
        var plain = Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs);
        string[] args = ["predict", "--accelerator", "cpu", "--model", model, "--data", other,
            .. named is null ? Array.Empty<string>() : ["--delimiter", named]];
        var read = Run(args);
        Assert.True(read.Code == 0, read.Error);
        Assert.Equal(plain.Output, read.Output);
    }

    [Fact]
    public void A_file_split_by_no_separator_known_is_refused_naming_what_the_header_held()
    {
        var (model, songs) = Files();
        string piped = InFolder("piped.csv");
        File.WriteAllText(piped, File.ReadAllText(songs).Replace(",", "|", StringComparison.Ordinal));
        var (code, _, error) = Run("predict", "--accelerator", "cpu", "--model", model, "--data", piped);
        Assert.Equal(2, code);
        OneErrorLine(error, "has 1 column");
        Assert.Contains("the separator it holds most of; --delimiter names another", error);
        Assert.DoesNotContain("CsvFormat", error);
        // A library caller reads the reader's format property instead of the flag.
        var e = Assert.Throws<InputException>(() => SongData.Load(piped));
        Assert.Contains("the separator it holds most of; CsvFormat.Delimiter names another", e.Message);
        Assert.DoesNotContain("--", e.Message);
    }

    [Fact]
    public void Dash_as_data_reads_standard_input()
    {
        var (model, songs) = Files();
        using var tool = Tool("predict", "--accelerator", "cpu", "--model", model, "--data", "-");
        tool.StandardInput.Write(File.ReadAllText(songs));
        tool.StandardInput.Close();
        string stdout = tool.StandardOutput.ReadToEnd(), stderr = tool.StandardError.ReadToEnd();
        tool.WaitForExit();
        Assert.True(tool.ExitCode == 0, stderr);
        Assert.Equal(Run("predict", "--accelerator", "cpu", "--model", model, "--data", songs).Output, stdout);
    }

    [Fact]
    public async Task Predict_stops_when_the_reader_of_its_output_goes_away()
    {
        // An endless input: a predictor that kept scoring after `| head` closed its pipe would never end.
        var (model, _) = Files();
        using var tool = Tool("predict", "--accelerator", "cpu", "--model", model, "--data", "-");
        var feed = Task.Run(() =>
        {
            try
            {
                tool.StandardInput.Write(Lines[0] + "\n");
                for (long i = 0; !tool.HasExited; i++)
                    tool.StandardInput.Write(Lines[1 + i % 200] + "\n");
            }
            catch (IOException)
            {
                // the tool is gone: its input closed
            }
        });
        Assert.Equal("track,artist,probability,prediction", tool.StandardOutput.ReadLine());
        Assert.NotNull(tool.StandardOutput.ReadLine());
        tool.StandardOutput.Close(); // as head does after two lines
        Assert.True(tool.WaitForExit(TimeSpan.FromSeconds(60)), "predict went on after its reader left");
        string stderr = tool.StandardError.ReadToEnd();
        Assert.True(tool.ExitCode == 0, stderr);
        Assert.DoesNotContain("error", stderr);
        await feed.WaitAsync(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken);
    }
}
