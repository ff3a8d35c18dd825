// The data path: the Spotify hit-predictor CSV schema, loading whole files or chunks of them (SongReader), the
// embedded 90s file, and writing songs back as CSV.
using System.Globalization;
using System.IO.Compression;
using CsvHelper;

namespace HitGpu.Nn;

/// <summary>Bad input: the message is one line a user can act on ("file:line:column: what is wrong").</summary>
public sealed class InputException(string message) : Exception(OneLine(message))
{
    /// <summary>Line breaks and other control characters (from a quoted field, a header, an inner message) shown as escapes: a refusal is one line.</summary>
    public static string OneLine(string text)
    {
        var line = new System.Text.StringBuilder(text.Length);
        foreach (char c in text)
            line.Append(c switch { '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", _ when char.IsControl(c) => $"\\u{(int)c:x4}", _ => c.ToString() });
        return line.ToString();
    }
}

/// <summary>A file the songs were read from, with its SHA-256 and row count.</summary>
public sealed record DataFile(string Source, string Sha256, int Rows);

/// <summary>
/// Songs as a row-major (Count, 15) float matrix of audio features, with labels (1 = hit) when the file has
/// a target column, and the track and artist names when it has them.
/// </summary>
public sealed class SongTable
{
    public required string Source { get; init; }
    public IReadOnlyList<DataFile> Files { get; init; } = [];
    public required float[] Features { get; init; }   // (Count, FeatureCount)
    public float[]? Labels { get; init; }             // (Count): 0 or 1, null when the input had no target
    public string[]? Tracks { get; init; }
    public string[]? Artists { get; init; }
    /// <summary>(Count) a 64-bit key of each song's uri, when the file has a uri column: for finding the same song twice.</summary>
    public ulong[]? UriKeys { get; init; }
    /// <summary>(Count) each song's uri as written, kept with the names (for the files HitGpu writes back).</summary>
    public string[]? Uris { get; init; }
    public int Count => Features.Length / SongData.FeatureCount;

    /// <summary>The rows at the given indices, in that order.</summary>
    public SongTable Subset(IReadOnlyList<int> rows)
    {
        int f = SongData.FeatureCount;
        var features = new float[rows.Count * f];
        for (int r = 0; r < rows.Count; r++)
            Array.Copy(Features, rows[r] * f, features, r * f, f);
        return new SongTable
        {
            Source = Source,
            Files = Files,
            Features = features,
            Labels = Labels is null ? null : rows.Select(r => Labels[r]).ToArray(),
            Tracks = Tracks is null ? null : rows.Select(r => Tracks[r]).ToArray(),
            Artists = Artists is null ? null : rows.Select(r => Artists[r]).ToArray(),
            UriKeys = UriKeys is null ? null : rows.Select(r => UriKeys[r]).ToArray(),
            Uris = Uris is null ? null : rows.Select(r => Uris[r]).ToArray(),
        };
    }

    /// <summary>Rows of several tables one after the other (e.g. all six decades).</summary>
    public static SongTable Concat(IReadOnlyList<SongTable> tables)
    {
        if (tables.Count == 1)
            return tables[0];
        bool labels = tables.All(t => t.Labels is not null);
        bool names = tables.All(t => t.Tracks is not null && t.Artists is not null);
        bool uris = tables.All(t => t.UriKeys is not null);
        bool uriTexts = tables.All(t => t.Uris is not null);
        return new SongTable
        {
            Source = string.Join(", ", tables.Select(t => t.Source)),
            Files = tables.SelectMany(t => t.Files).ToList(),
            Features = tables.SelectMany(t => t.Features).ToArray(),
            Labels = labels ? tables.SelectMany(t => t.Labels!).ToArray() : null,
            Tracks = names ? tables.SelectMany(t => t.Tracks!).ToArray() : null,
            Artists = names ? tables.SelectMany(t => t.Artists!).ToArray() : null,
            UriKeys = uris ? tables.SelectMany(t => t.UriKeys!).ToArray() : null,
            Uris = uriTexts ? tables.SelectMany(t => t.Uris!).ToArray() : null,
        };
    }
}

public static class SongData
{
    /// <summary>The 15 audio features the network reads, in this order.</summary>
    public static readonly string[] FeatureNames =
    [
        "danceability", "energy", "key", "loudness", "mode", "speechiness", "acousticness", "instrumentalness",
        "liveness", "valence", "tempo", "duration_ms", "time_signature", "chorus_hit", "sections",
    ];

    public const int FeatureCount = 15;

    /// <summary>The feature that must be positive (a song has a length).</summary>
    public static readonly int DurationFeature = Array.IndexOf(FeatureNames, "duration_ms");

    /// <summary>
    /// What is wrong with a feature's value, in the words every reader uses (a CSV field, a JSON number, a
    /// tensor element), or null: it must be finite, within float32's range (the network computes in float32: a
    /// value finite in the file but not as a float would become infinity) and, for the duration, positive as a
    /// float32 (1e-50 in the file is 0 there). <paramref name="text"/> is the value as the input wrote it.
    /// </summary>
    public static string? ValueProblem(string name, double value, string text, bool positive)
    {
        if (!double.IsFinite(value))
            return $"{name} must be finite, got '{text}'";
        if (Math.Abs(value) > float.MaxValue)
            return $"{name} is {text}, beyond float32's range (±3.4e38)";
        if (positive && (float)value <= 0f)
            return $"{name} must be positive, got {value.ToString(CultureInfo.InvariantCulture)}";
        return null;
    }

    /// <summary>"-" as a path: standard input where songs are read, standard output where an output is written.</summary>
    public const string StandardStream = "-";
    public const string Target = "target";

    /// <summary>Name under which the embedded 90s file is reported.</summary>
    public const string EmbeddedName = "embedded:dataset-of-90s.csv";
    private const string EmbeddedResource = "HitGpu.Nn.Data.dataset-of-90s.csv.gz";

    /// <summary>The 90s file of the Spotify Hit Predictor Dataset (Farooq Ansari), shipped gzip-compressed inside this library.</summary>
    public static SongTable LoadEmbedded90s() => Parse(Embedded90sBytes(), EmbeddedName, requireTarget: true);

    /// <summary>The embedded 90s file's bytes, uncompressed (tests write variants of it).</summary>
    public static byte[] Embedded90sBytes()
    {
        using var compressed = typeof(SongData).Assembly.GetManifestResourceStream(EmbeddedResource)
            ?? throw new InvalidOperationException($"resource {EmbeddedResource} is missing from the HitGpu.Nn assembly");
        using var gzip = new GZipStream(compressed, CompressionMode.Decompress);
        using var bytes = new MemoryStream();
        gzip.CopyTo(bytes);
        return bytes.ToArray();
    }

    /// <summary>Reads one CSV file whole; see <see cref="Parse"/> for the format.</summary>
    /// <param name="keepNames">keep track and artist (only where an output needs them: they cost memory)</param>
    public static SongTable Load(string path, bool requireTarget = true, bool keepNames = true, CsvFormat? format = null)
    {
        using var reader = SongReader.Open(path, requireTarget, keepNames, format);
        return Whole(reader, path);
    }

    /// <summary>
    /// Reads every CSV file a list of paths names: files as they are, folders as their *.csv files in name
    /// order. The same file named twice (or two files with the same bytes) is refused: its songs would be in
    /// the training and the test part at once.
    /// </summary>
    public static SongTable LoadMany(IReadOnlyList<string> paths, bool requireTarget = true, bool keepNames = true, CsvFormat? format = null)
    {
        var files = new List<string>();
        foreach (var path in paths)
        {
            if (Directory.Exists(path))
            {
                var inFolder = Directory.GetFiles(path).Where(f => f.EndsWith(".csv", StringComparison.Ordinal)
                    || f.EndsWith(".csv.gz", StringComparison.Ordinal))
                    .Order(StringComparer.Ordinal).ToList();
                if (inFolder.Count == 0)
                    throw new InputException($"{path}: folder holds no .csv or .csv.gz file");
                files.AddRange(inFolder);
            }
            else
            {
                files.Add(path);
            }
        }
        var seen = new Dictionary<string, string>();
        foreach (var file in files)
            if (!seen.TryAdd(AtomicFile.FileKey(file), file))
                throw new InputException($"{file}: given twice (also as {seen[AtomicFile.FileKey(file)]}): its songs would be in the training and " +
                    $"the test part at once");
        var tables = files.Select(f => Load(f, requireTarget, keepNames, format)).ToList();
        for (int i = 0; i < tables.Count; i++)
            for (int j = 0; j < i; j++)
                if (tables[i].Files[0].Sha256 == tables[j].Files[0].Sha256)
                    throw new InputException($"{files[i]}: has the same bytes as {files[j]}: its songs would be in the training and the test part at once");
        return SongTable.Concat(tables);
    }

    /// <summary>
    /// Reads a CSV file in chunks of up to <paramref name="chunkRows"/> songs, for files of any size: memory
    /// holds one chunk. The first bad value stops the enumeration with its file, line and column.
    /// </summary>
    public static IEnumerable<SongTable> ReadChunks(string path, int chunkRows, bool requireTarget = false, bool keepNames = true, CsvFormat? format = null)
    {
        if (chunkRows < 1)
            throw new ArgumentOutOfRangeException(nameof(chunkRows), $"chunks hold at least one row, got {chunkRows}");
        using var reader = SongReader.Open(path, requireTarget, keepNames, format);
        while (reader.ReadChunk(chunkRows) is { } chunk)
            yield return chunk;
    }

    /// <summary>
    /// The chunks of <paramref name="source"/>, read up to <paramref name="ahead"/> chunks ahead on another
    /// thread, so that reading the next chunk overlaps scoring this one. An exception of the reader comes out
    /// where its chunk would have; leaving the enumeration early stops the reader.
    /// </summary>
    public static IEnumerable<SongTable> ReadAhead(IEnumerable<SongTable> source, int ahead = 2)
    {
        using var queue = new System.Collections.Concurrent.BlockingCollection<(SongTable? Chunk, Exception? Error)>(ahead);
        using var stop = new CancellationTokenSource();
        var reader = Task.Run(() =>
        {
            try
            {
                foreach (var chunk in source)
                    queue.Add((chunk, null), stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                queue.Add((null, e));
            }
            finally
            {
                queue.CompleteAdding();
            }
        });
        try
        {
            foreach (var (chunk, error) in queue.GetConsumingEnumerable())
            {
                if (error is not null)
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
                yield return chunk!;
            }
        }
        finally
        {
            stop.Cancel();
            reader.Wait();
        }
    }

    /// <summary>
    /// Parses a CSV in the dataset's format: a header, then one row per song. Columns are found by name in
    /// any order; track, artist and uri are optional (track and artist kept, uri as a key); the 15 features
    /// must be present; <c>target</c> must be present when <paramref name="requireTarget"/> is set.
    /// UTF-8 with or without a byte-order mark (UTF-16 with one too), invariant-culture numbers such as
    /// 1.72e-05, quoted titles with commas.
    /// </summary>
    public static SongTable Parse(byte[] bytes, string source, bool requireTarget = true)
    {
        using var reader = SongReader.Over(bytes, source, requireTarget);
        return Whole(reader, source);
    }

    private static SongTable Whole(SongReader reader, string source)
    {
        var table = reader.ReadChunk(int.MaxValue)!;
        return new SongTable
        {
            Source = source,
            Files = [new DataFile(source, reader.Sha256(), table.Count)],
            Features = table.Features, Labels = table.Labels, Tracks = table.Tracks, Artists = table.Artists, UriKeys = table.UriKeys, Uris = table.Uris,
        };
    }

    /// <summary>A 64-bit key of some bytes (FNV-1a): equal bytes, equal keys; different ones collide with odds of 2^-64.</summary>
    public static ulong Key(ReadOnlySpan<byte> bytes)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in bytes)
            hash = (hash ^ b) * 1099511628211UL;
        return hash;
    }

    /// <summary>How HitGpu writes every CSV: LF line ends, invariant-culture numbers.</summary>
    public static readonly CsvWriterOptions WriterOptions = CsvWriterOptions.Default with { NewLine = "\n", FormatProvider = CultureInfo.InvariantCulture };

    /// <summary>Writes songs in the dataset's format (track, artist and uri when known, the 15 features, target when known).</summary>
    public static void WriteCsv(SongTable songs, string path) => AtomicFile.Write(path, stream =>
    {
        using var writer = CsvWriter.Create(stream, WriterOptions, true);
        bool names = songs.Tracks is not null && songs.Artists is not null;
        var header = new List<string>();
        if (names) header.AddRange(["track", "artist"]);
        if (songs.Uris is not null) header.Add("uri");
        header.AddRange(FeatureNames);
        if (songs.Labels is not null) header.Add(Target);
        writer.WriteRecord(header.ToArray());
        var record = new string[header.Count];
        for (int r = 0; r < songs.Count; r++)
        {
            int c = 0;
            if (names) { record[c++] = songs.Tracks![r]; record[c++] = songs.Artists![r]; }
            if (songs.Uris is not null) record[c++] = songs.Uris[r];
            for (int f = 0; f < FeatureCount; f++)
                record[c++] = songs.Features[r * FeatureCount + f].ToString("R", CultureInfo.InvariantCulture);
            if (songs.Labels is not null) record[c] = songs.Labels[r].ToString(CultureInfo.InvariantCulture);
            writer.WriteRecord(record);
        }
    });
}
