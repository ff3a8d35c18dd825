// The data path: the embedded file, the split, the preprocessing fitted on the training part, and one clear error for each kind of bad input.
using System.Text;

namespace HitGpu.Nn.Tests;

public sealed class DataTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("hitgpu-data-").FullName;
    private static readonly string[] Lines = Encoding.UTF8.GetString(SongData.Embedded90sBytes()).Split('\n', StringSplitOptions.RemoveEmptyEntries);

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string Write(string name, string text, Encoding? encoding = null)
    {
        string path = Path.Combine(folder, name);
        File.WriteAllText(path, text, encoding ?? new UTF8Encoding(false));
        return path;
    }

    /// <summary>The header and the first n rows of the 90s file, with an edit applied to the fields of data row `row` (1-based).</summary>
    private string WriteEdited(string name, int rows, int row, Func<string[], string[]> edit)
    {
        var header = Lines[0].Split(',');
        var body = Lines.Skip(1).Take(rows).Select((line, i) => i + 1 == row ? CsvText.Join(edit(CsvText.Split(line))) : line);
        return Write(name, string.Join("\n", body.Prepend(string.Join(",", header))) + "\n");
    }

    private static int Column(string name) => Array.IndexOf(Lines[0].Split(','), name);

    [Fact]
    public void Embedded_file_has_all_rows_balanced_and_the_study_columns()
    {
        var songs = SongData.LoadEmbedded90s();
        Assert.Equal(5520, songs.Count);
        Assert.Equal(2760, songs.Labels!.Count(l => l == 1f));
        // Row 103 is "1-2-3" by The Chimes: titles are kept as text, not turned into dates.
        Assert.Equal("1-2-3", songs.Tracks![102]);
        // A value in scientific notation parses: some instrumentalness values are like 1.72e-05.
        Assert.Contains(songs.Features.Where((_, i) => i % SongData.FeatureCount == 7), v => v > 0 && v < 1e-4);
    }

    [Fact]
    public void Embedded_file_is_the_original_byte_for_byte()
    {
        // SHA-256 of dataset-of-90s.csv as published (shared/data/spotify-hits/README.md).
        Assert.Equal("aeeed288dc138c8ef7ef3da8fcbf23d2c0e72afd4067baf40804d8f129196235",
            Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(SongData.Embedded90sBytes())));
    }

    [Fact]
    public void Quoted_titles_with_commas_and_a_byte_order_mark_read()
    {
        string path = Write("bom.csv", string.Join("\n", Lines.Take(40)) + "\n", new UTF8Encoding(true));
        Assert.Equal(0xEF, File.ReadAllBytes(path)[0]);
        var songs = SongData.Load(path);
        Assert.Equal(39, songs.Count);
        Assert.Contains(Lines.Skip(1).Take(39), l => l.StartsWith('"'));
        Assert.DoesNotContain(songs.Tracks!, t => t.StartsWith('"'));
    }

    [Fact]
    public void A_UTF16_file_with_a_byte_order_mark_reads_the_same()
    {
        string text = string.Join("\n", Lines.Take(40)) + "\n";
        var utf8 = SongData.Load(Write("utf8.csv", text));
        var utf16 = SongData.Load(Write("utf16.csv", text, new UnicodeEncoding(bigEndian: false, byteOrderMark: true)));
        Assert.Equal(utf8.Features, utf16.Features);
        Assert.Equal(utf8.Tracks, utf16.Tracks);
        Assert.Contains("file is empty", Assert.Throws<InputException>(() => SongData.Load(Write("bomonly.csv", "", new UTF8Encoding(true)))).Message);
    }

    [Fact]
    public void Columns_are_found_by_name_in_any_order()
    {
        var header = Lines[0].Split(',');
        var rows = Lines.Skip(1).Take(10).Select(CsvText.Split).ToList();
        var order = Enumerable.Range(0, header.Length).Reverse().ToArray();
        var text = string.Join(",", order.Select(i => header[i])) + "\n" +
                   string.Join("\n", rows.Select(r => CsvText.Join(order.Select(i => r[i])))) + "\n";
        var reversed = SongData.Load(Write("reversed.csv", text));
        var original = SongData.Load(WriteEdited("original.csv", 10, 0, f => f));
        Assert.Equal(original.Features, reversed.Features);
        Assert.Equal(original.Labels, reversed.Labels);
    }

    [Theory]
    [InlineData("danceability", "abc", "is not a number")]
    [InlineData("tempo", "NaN", "must be finite")]
    [InlineData("loudness", "-Infinity", "must be finite")]
    [InlineData("duration_ms", "-5000", "duration_ms must be positive")]
    [InlineData("target", "2", "target must be 0 or 1")]
    [InlineData("energy", "", "is not a number")]
    public void A_bad_value_is_reported_with_file_line_and_column(string column, string value, string expected)
    {
        string path = WriteEdited("bad.csv", 20, 7, fields => { fields[Column(column)] = value; return fields; });
        var error = Assert.Throws<InputException>(() => SongData.Load(path));
        // Data row 7 is line 8 of the file; columns count from 1.
        Assert.StartsWith($"{path}:8:{Column(column) + 1}: ", error.Message);
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void A_ragged_row_is_reported_with_its_line()
    {
        string path = WriteEdited("ragged.csv", 20, 4, fields => fields[..^1]);
        var error = Assert.Throws<InputException>(() => SongData.Load(path));
        Assert.Equal($"{path}:5: row has 18 fields, the header has 19", error.Message);
    }

    [Fact]
    public void A_missing_feature_column_is_named()
    {
        var header = Lines[0].Split(',').ToList();
        int c = header.IndexOf("valence");
        var text = string.Join("\n", Lines.Take(5).Select(l => CsvText.Join(CsvText.Split(l).Where((_, i) => i != c)))) + "\n";
        var error = Assert.Throws<InputException>(() => SongData.Load(Write("novalence.csv", text)));
        Assert.Contains("missing column 'valence'", error.Message);
    }

    [Fact]
    public void Missing_empty_and_header_only_files_are_refused()
    {
        string missing = Path.Combine(folder, "nope.csv");
        Assert.Equal($"{missing}: file not found", Assert.Throws<InputException>(() => SongData.Load(missing)).Message);
        string empty = Write("empty.csv", "");
        Assert.Contains("file is empty", Assert.Throws<InputException>(() => SongData.Load(empty)).Message);
        string headerOnly = Write("header.csv", Lines[0] + "\n");
        Assert.Contains("no data rows", Assert.Throws<InputException>(() => SongData.Load(headerOnly)).Message);
        Assert.Contains("missing column 'target'", Assert.Throws<InputException>(() => SongData.Load(
            Write("notarget.csv", Lines[0].Replace(",target", "") + "\n"))).Message);
    }

    [Fact]
    public void Split_is_stratified_disjoint_complete_and_seeded()
    {
        var labels = SongData.LoadEmbedded90s().Labels!;
        var split = Split.Stratified(labels, seed: 0);
        Assert.Equal((3864, 828, 828), (split.Train.Length, split.Validation.Length, split.Test.Length));
        Assert.Equal(Enumerable.Range(0, labels.Length), split.Train.Concat(split.Validation).Concat(split.Test).Order());
        foreach (var part in new[] { split.Train, split.Validation, split.Test })
            Assert.Equal(part.Length / 2, part.Count(i => labels[i] == 1f));
        Assert.Equal(split.Test, Split.Stratified(labels, seed: 0).Test);
        Assert.NotEqual(split.Test, Split.Stratified(labels, seed: 1).Test);
    }

    [Fact]
    public void Standardiser_is_fitted_on_the_training_part_only()
    {
        var songs = SongData.LoadEmbedded90s();
        var split = Split.Stratified(songs.Labels!, seed: 0);
        var train = songs.Subset(split.Train);
        var fitted = Preprocessing.Fit(train.Features, FeatureEncoding.Raw, InputTransform.Standard);
        var whole = Preprocessing.Fit(songs.Features, FeatureEncoding.Raw, InputTransform.Standard);
        var z = fitted.Apply(train.Features);
        for (int c = 0; c < SongData.FeatureCount; c++)
        {
            var column = Enumerable.Range(0, train.Count).Select(r => (double)z[r * SongData.FeatureCount + c]).ToArray();
            Tolerance.Close(0, column.Average(), $"mean of standardised column {c}", 1e-4, 0);
            Tolerance.Close(1, Math.Sqrt(column.Select(v => v * v).Average()), $"deviation of standardised column {c}", 1e-4, 0);
        }
        Assert.NotEqual(whole.Means, fitted.Means); // the whole file would leak the held-out parts
    }
}
