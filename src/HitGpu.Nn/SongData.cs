// The data path: the Spotify hit-predictor CSV schema, a checked reader (CsvHelper), and the embedded 90s file.
// Every value is checked; the first bad one stops the read with its file, line and column.
using System.Globalization;
using System.IO.Compression;
using System.Text;
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
        };
    }

    /// <summary>Rows of several tables one after the other (e.g. all six decades).</summary>
    public static SongTable Concat(IReadOnlyList<SongTable> tables)
    {
        if (tables.Count == 1)
            return tables[0];
        bool labels = tables.All(t => t.Labels is not null);
        bool names = tables.All(t => t.Tracks is not null && t.Artists is not null);
        return new SongTable
        {
            Source = string.Join(", ", tables.Select(t => t.Source)),
            Files = tables.SelectMany(t => t.Files).ToList(),
            Features = tables.SelectMany(t => t.Features).ToArray(),
            Labels = labels ? tables.SelectMany(t => t.Labels!).ToArray() : null,
            Tracks = names ? tables.SelectMany(t => t.Tracks!).ToArray() : null,
            Artists = names ? tables.SelectMany(t => t.Artists!).ToArray() : null,
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

    /// <summary>Reads one CSV file; see <see cref="Parse"/>.</summary>
    public static SongTable Load(string path, bool requireTarget = true)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            throw new InputException($"{path}: file not found");
        }
        catch (DirectoryNotFoundException)
        {
            throw new InputException($"{path}: file not found (no such directory)");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException($"{path}: cannot read the file ({e.Message})");
        }
        return Parse(bytes, path, requireTarget);
    }

    /// <summary>
    /// Reads every CSV file a list of paths names: files as they are, folders as their *.csv files in name order.
    /// </summary>
    public static SongTable LoadMany(IReadOnlyList<string> paths, bool requireTarget = true)
    {
        var files = new List<string>();
        foreach (var path in paths)
        {
            if (Directory.Exists(path))
            {
                var inFolder = Directory.GetFiles(path, "*.csv").Order(StringComparer.Ordinal).ToList();
                if (inFolder.Count == 0)
                    throw new InputException($"{path}: folder holds no .csv file");
                files.AddRange(inFolder);
            }
            else
            {
                files.Add(path);
            }
        }
        return SongTable.Concat(files.Select(f => Load(f, requireTarget)).ToList());
    }

    /// <summary>
    /// Parses a CSV in the dataset's format: a header, then one row per song. Columns are found by name in
    /// any order; track, artist and uri are optional and only track and artist are kept; the 15 features
    /// must be present; <c>target</c> must be present when <paramref name="requireTarget"/> is set.
    /// UTF-8 with or without a byte-order mark (UTF-16 with one too), invariant-culture numbers such as
    /// 1.72e-05, quoted titles with commas.
    /// </summary>
    public static SongTable Parse(byte[] bytes, string source, bool requireTarget = true)
    {
        if (bytes.Length == 0 || IsOnlyBom(bytes))
            throw new InputException($"{source}: file is empty (expected a header line and data rows)");
        var options = CsvReaderOptions.Default with
        {
            Separator = ',',
            HasHeader = true,
            TrackLineNumbers = true,
            FieldCountMismatch = CsvFieldCountHandling.Allow,
            MalformedData = CsvMalformedDataHandling.Throw,
            FormatProvider = CultureInfo.InvariantCulture,
        };
        try
        {
            using var reader = CsvReader.Create(bytes, options);
            return Read(reader, source, requireTarget, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)));
        }
        catch (CsvFormatException e)
        {
            throw new InputException($"{source}: malformed CSV: {FirstLine(e.Message)}");
        }
    }

    private static SongTable Read(CsvReader reader, string source, bool requireTarget, string sha256)
    {
        var header = reader.Headers.Select(h => h.Trim()).ToArray();
        int Column(string name) => Array.FindIndex(header, h => string.Equals(h, name, StringComparison.OrdinalIgnoreCase));
        foreach (var name in FeatureNames.Append(Target))
            if (header.Count(h => string.Equals(h, name, StringComparison.OrdinalIgnoreCase)) > 1)
                throw new InputException($"{source}:1: column '{name}' appears twice (which one holds the {(name == Target ? "target" : "feature")}?)");
        var featureColumns = new int[FeatureCount];
        for (int f = 0; f < FeatureCount; f++)
        {
            featureColumns[f] = Column(FeatureNames[f]);
            if (featureColumns[f] < 0)
                throw new InputException($"{source}:1: missing column '{FeatureNames[f]}' (the header must name all 15 features: {string.Join(",", FeatureNames)})");
        }
        int targetColumn = Column(Target);
        if (requireTarget && targetColumn < 0)
            throw new InputException($"{source}:1: missing column '{Target}' (1 = hit, 0 = not a hit)");
        int trackColumn = Column("track"), artistColumn = Column("artist");
        bool names = trackColumn >= 0 && artistColumn >= 0;

        var features = new List<float>(4096 * FeatureCount);
        var labels = targetColumn >= 0 ? new List<float>(4096) : null;
        var tracks = names ? new List<string>(4096) : null;
        var artists = names ? new List<string>(4096) : null;
        while (reader.Read())
        {
            long line = reader.LineNumber;
            if (reader.FieldCount != header.Length)
                throw new InputException($"{source}:{line}: row has {reader.FieldCount} fields, the header has {header.Length}");
            for (int f = 0; f < FeatureCount; f++)
            {
                int c = featureColumns[f];
                double value = Number(reader, c, source, line, header[c]);
                // Positive as the network sees it: a float32 (1e-50 in the file is 0 there).
                if (FeatureNames[f] == "duration_ms" && (float)value <= 0f)
                    throw new InputException($"{source}:{line}:{c + 1}: duration_ms must be positive, got {value.ToString(CultureInfo.InvariantCulture)}");
                features.Add((float)value);
            }
            if (labels is not null)
            {
                double y = Number(reader, targetColumn, source, line, Target);
                if (y != 0 && y != 1)
                    throw new InputException($"{source}:{line}:{targetColumn + 1}: target must be 0 or 1, got '{reader.GetString(targetColumn)}'");
                labels.Add((float)y);
            }
            if (names)
            {
                tracks!.Add(reader.GetString(trackColumn));
                artists!.Add(reader.GetString(artistColumn));
            }
        }
        if (features.Count == 0)
            throw new InputException($"{source}: file has a header but no data rows");
        return new SongTable
        {
            Source = source,
            Files = [new DataFile(source, sha256, labels?.Count ?? tracks?.Count ?? features.Count / FeatureCount)],
            Features = features.ToArray(),
            Labels = labels?.ToArray(),
            Tracks = tracks?.ToArray(),
            Artists = artists?.ToArray(),
        };
    }

    /// <summary>How HitGpu writes every CSV: LF line ends, invariant-culture numbers.</summary>
    public static readonly CsvWriterOptions WriterOptions = CsvWriterOptions.Default with { NewLine = "\n", FormatProvider = CultureInfo.InvariantCulture };

    /// <summary>Writes songs in the dataset's format (track and artist when known, the 15 features, target when known).</summary>
    public static void WriteCsv(SongTable songs, string path) => AtomicFile.Write(path, stream =>
    {
        using var writer = CsvWriter.Create(stream, WriterOptions, true);
        bool names = songs.Tracks is not null && songs.Artists is not null;
        var header = new List<string>();
        if (names) header.AddRange(["track", "artist"]);
        header.AddRange(FeatureNames);
        if (songs.Labels is not null) header.Add(Target);
        writer.WriteRecord(header.ToArray());
        var record = new string[header.Count];
        for (int r = 0; r < songs.Count; r++)
        {
            int c = 0;
            if (names) { record[c++] = songs.Tracks![r]; record[c++] = songs.Artists![r]; }
            for (int f = 0; f < FeatureCount; f++)
                record[c++] = songs.Features[r * FeatureCount + f].ToString("R", CultureInfo.InvariantCulture);
            if (songs.Labels is not null) record[c] = songs.Labels[r].ToString(CultureInfo.InvariantCulture);
            writer.WriteRecord(record);
        }
    });

    private static double Number(CsvReader reader, int column, string source, long line, string name)
    {
        var text = reader.GetSpan(column);
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
            throw new InputException($"{source}:{line}:{column + 1}: {name} is not a number: '{Encoding.UTF8.GetString(text)}'");
        if (!double.IsFinite(value))
            throw new InputException($"{source}:{line}:{column + 1}: {name} must be finite, got '{Encoding.UTF8.GetString(text)}'");
        // The network computes in float32: a value finite in the file but not as a float would become infinity.
        if (Math.Abs(value) > float.MaxValue)
            throw new InputException($"{source}:{line}:{column + 1}: {name} is {Encoding.UTF8.GetString(text)}, beyond float32's range (±3.4e38)");
        return value;
    }

    private static bool IsOnlyBom(byte[] bytes) =>
        bytes.AsSpan().SequenceEqual(new byte[] { 0xEF, 0xBB, 0xBF }) || bytes.AsSpan().SequenceEqual(new byte[] { 0xFF, 0xFE }) || bytes.AsSpan().SequenceEqual(new byte[] { 0xFE, 0xFF });

    private static string FirstLine(string text) => text.Split('\n')[0].Trim();
}
