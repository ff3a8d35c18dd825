// The CSV reader of the dataset's format: the header checked once, then rows parsed by CsvHelper's low-level
// parser straight into float32 arrays, a chunk at a time, so that memory stays flat whatever the file's size
// and the file's text is never held. Every value is checked; the first bad one stops the read with its file,
// line and column.
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using CsvHelper;

namespace HitGpu.Nn;

public sealed class SongReader : IDisposable
{
    private readonly CsvReader reader;
    private readonly IncrementalHash hash;
    private readonly string source;
    private readonly int fieldCount, targetColumn, trackColumn, artistColumn, uriColumn, durationFeature;
    private readonly int[] featureColumns = new int[SongData.FeatureCount];
    private readonly string[] header;
    private bool finished;

    /// <summary>Whether the file has a target column (labels are read).</summary>
    public bool HasTarget => targetColumn >= 0;

    /// <summary>Whether track and artist are kept (the file has both and the caller asked for them).</summary>
    public bool KeepsNames { get; }

    /// <summary>Data rows read so far.</summary>
    public long Rows { get; private set; }

    private static readonly CsvReaderOptions Options = CsvReaderOptions.Default with
    {
        Separator = ',',
        HasHeader = true,
        TrackLineNumbers = true,
        FieldCountMismatch = CsvFieldCountHandling.Allow,
        MalformedData = CsvMalformedDataHandling.Throw,
        FormatProvider = CultureInfo.InvariantCulture,
    };

    /// <summary>Opens a CSV file; see <see cref="SongData.Parse"/> for the format.</summary>
    /// <param name="keepNames">keep track and artist (only where an output needs them: they cost memory)</param>
    public static SongReader Open(string path, bool requireTarget = true, bool keepNames = true)
    {
        Stream file;
        try
        {
            file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
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
            throw new InputException(Directory.Exists(path) ? $"{path}: is a folder, not a CSV file" : $"{path}: cannot read the file ({e.Message})");
        }
        return Over(file, path, requireTarget, keepNames);
    }

    /// <summary>Reads CSV bytes held in memory (tests, the embedded file).</summary>
    public static SongReader Over(byte[] bytes, string source, bool requireTarget = true, bool keepNames = true) =>
        Over(new MemoryStream(bytes, writable: false), source, requireTarget, keepNames);

    private static SongReader Over(Stream stream, string source, bool requireTarget, bool keepNames)
    {
        var hashing = new HashingStream(stream);
        try
        {
            return new SongReader(hashing, source, requireTarget, keepNames);
        }
        catch
        {
            hashing.Dispose();
            throw;
        }
    }

    private SongReader(HashingStream stream, string source, bool requireTarget, bool keepNames)
    {
        this.source = source;
        hash = stream.Hash;
        if (IsEmpty(stream))
            throw new InputException($"{source}: file is empty (expected a header line and data rows)");
        reader = CsvReader.Create(stream, Options, leaveOpen: false);
        try
        {
            header = reader.Headers.Select(h => h.Trim()).ToArray();
        }
        catch (CsvFormatException e)
        {
            reader.Dispose();
            throw Malformed(e);
        }
        fieldCount = header.Length;
        int Column(string name) => Array.FindIndex(header, h => string.Equals(h, name, StringComparison.OrdinalIgnoreCase));
        foreach (var name in SongData.FeatureNames.Append(SongData.Target))
            if (header.Count(h => string.Equals(h, name, StringComparison.OrdinalIgnoreCase)) > 1)
                Refuse($"{source}:1: column '{name}' appears twice (which one holds the {(name == SongData.Target ? "target" : "feature")}?)");
        for (int f = 0; f < SongData.FeatureCount; f++)
        {
            featureColumns[f] = Column(SongData.FeatureNames[f]);
            if (featureColumns[f] < 0)
                Refuse($"{source}:1: missing column '{SongData.FeatureNames[f]}' (the header must name all 15 features: {string.Join(",", SongData.FeatureNames)})");
        }
        targetColumn = Column(SongData.Target);
        if (requireTarget && targetColumn < 0)
            Refuse($"{source}:1: missing column '{SongData.Target}' (1 = hit, 0 = not a hit)");
        (trackColumn, artistColumn, uriColumn) = (Column("track"), Column("artist"), Column("uri"));
        KeepsNames = keepNames && trackColumn >= 0 && artistColumn >= 0;
        durationFeature = Array.IndexOf(SongData.FeatureNames, "duration_ms");
    }

    private void Refuse(string message)
    {
        reader.Dispose();
        throw new InputException(message);
    }

    private InputException Malformed(CsvFormatException e) => new($"{source}: malformed CSV: {e.Message.Split('\n')[0].Trim()}");

    /// <summary>
    /// The next up to <paramref name="maxRows"/> rows, or null at the end of the file. The first bad value
    /// throws an <see cref="InputException"/> naming its file, line and column.
    /// </summary>
    public SongTable? ReadChunk(int maxRows)
    {
        if (finished)
            return null;
        int f = SongData.FeatureCount, capacity = (int)Math.Min(maxRows, 1L << 16);
        var features = new float[capacity * f];
        var labels = HasTarget ? new float[capacity] : null;
        var tracks = KeepsNames ? new string[capacity] : null;
        var artists = KeepsNames ? new string[capacity] : null;
        var uris = uriColumn >= 0 ? new ulong[capacity] : null;
        var uriTexts = KeepsNames && uriColumn >= 0 ? new string[capacity] : null; // kept with the names, for the files written back
        int count = 0;
        try
        {
            while (count < maxRows && reader.Read())
            {
                if (count == capacity)
                {
                    capacity = (int)Math.Min(maxRows, 2L * capacity);
                    Array.Resize(ref features, capacity * f);
                    if (labels is not null) Array.Resize(ref labels, capacity);
                    if (tracks is not null) Array.Resize(ref tracks, capacity);
                    if (artists is not null) Array.Resize(ref artists, capacity);
                    if (uris is not null) Array.Resize(ref uris, capacity);
                    if (uriTexts is not null) Array.Resize(ref uriTexts, capacity);
                }
                ReadRow(count, features, labels, tracks, artists, uris, uriTexts);
                count++;
            }
        }
        catch (CsvFormatException e)
        {
            throw Malformed(e);
        }
        Rows += count;
        if (count < maxRows)
            finished = true;
        if (count == 0)
        {
            if (Rows == 0)
                throw new InputException($"{source}: file has a header but no data rows");
            return null;
        }
        return new SongTable
        {
            Source = source,
            Features = count == capacity ? features : features[..(count * f)],
            Labels = labels is null || count == capacity ? labels : labels[..count],
            Tracks = tracks is null || count == capacity ? tracks : tracks[..count],
            Artists = artists is null || count == capacity ? artists : artists[..count],
            UriKeys = uris is null || count == capacity ? uris : uris[..count],
            Uris = uriTexts is null || count == capacity ? uriTexts : uriTexts[..count],
        };
    }

    private void ReadRow(int at, float[] features, float[]? labels, string[]? tracks, string[]? artists, ulong[]? uris, string[]? uriTexts)
    {
        long line = reader.LineNumber;
        if (reader.FieldCount != fieldCount)
            throw new InputException($"{source}:{line}: row has {reader.FieldCount} fields, the header has {fieldCount}");
        for (int k = 0; k < SongData.FeatureCount; k++)
        {
            int c = featureColumns[k];
            double value = Number(c, line);
            // Positive as the network sees it: a float32 (1e-50 in the file is 0 there).
            if (k == durationFeature && (float)value <= 0f)
                throw new InputException($"{source}:{line}:{c + 1}: duration_ms must be positive, got {value.ToString(CultureInfo.InvariantCulture)}");
            features[at * SongData.FeatureCount + k] = (float)value;
        }
        if (labels is not null)
        {
            double y = Number(targetColumn, line);
            if (y != 0 && y != 1)
                throw new InputException($"{source}:{line}:{targetColumn + 1}: target must be 0 or 1, got '{Text(targetColumn)}'");
            labels[at] = (float)y;
        }
        if (tracks is not null)
        {
            tracks[at] = reader.GetString(trackColumn);
            artists![at] = reader.GetString(artistColumn);
        }
        uris?[at] = SongData.Key(reader.GetSpan(uriColumn));
        uriTexts?[at] = reader.GetString(uriColumn);
    }

    /// <summary>A field as a number: finite, and within float32's range, which the network computes in.</summary>
    private double Number(int column, long line)
    {
        string name = header[column];
        var text = reader.GetSpan(column);
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
            throw new InputException($"{source}:{line}:{column + 1}: {name} is not a number: '{Text(column)}'");
        if (!double.IsFinite(value))
            throw new InputException($"{source}:{line}:{column + 1}: {name} must be finite, got '{Text(column)}'");
        // The network computes in float32: a value finite in the file but not as a float would become infinity.
        if (Math.Abs(value) > float.MaxValue)
            throw new InputException($"{source}:{line}:{column + 1}: {name} is {Text(column)}, beyond float32's range (±3.4e38)");
        return value;
    }

    private string Text(int column) => Encoding.UTF8.GetString(reader.GetSpan(column));

    /// <summary>SHA-256 of the whole file, once it has been read to its end.</summary>
    public string Sha256()
    {
        while (ReadChunk(1 << 16) is not null) { }
        return Convert.ToHexStringLower(hash.GetCurrentHash());
    }

    /// <summary>Whether the stream holds nothing but perhaps a byte-order mark (its start is put back).</summary>
    private static bool IsEmpty(HashingStream stream)
    {
        Span<byte> start = stackalloc byte[4];
        int read = stream.Peek(start);
        var bytes = start[..read];
        return read == 0 || bytes.SequenceEqual(new byte[] { 0xEF, 0xBB, 0xBF }) || bytes.SequenceEqual(new byte[] { 0xFF, 0xFE }) || bytes.SequenceEqual(new byte[] { 0xFE, 0xFF });
    }

    public void Dispose() => reader.Dispose();

    /// <summary>A read-only stream that hashes what passes through it, with a small look-ahead for the empty-file check.</summary>
    private sealed class HashingStream(Stream inner) : Stream
    {
        public IncrementalHash Hash { get; } = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private byte[] pending = [];
        private int pendingAt;

        /// <summary>Reads up to <paramref name="into"/>.Length bytes ahead; the next reads return them again.</summary>
        public int Peek(Span<byte> into)
        {
            var buffer = new byte[into.Length];
            int read = 0, n;
            while (read < buffer.Length && (n = inner.Read(buffer, read, buffer.Length - read)) > 0)
                read += n;
            pending = buffer[..read];
            pendingAt = 0;
            pending.CopyTo(into);
            return read;
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int n;
            if (pendingAt < pending.Length)
            {
                n = Math.Min(buffer.Length, pending.Length - pendingAt);
                pending.AsSpan(pendingAt, n).CopyTo(buffer);
                pendingAt += n;
            }
            else
            {
                n = inner.Read(buffer);
            }
            Hash.AppendData(buffer[..n]);
            return n;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
                Hash.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
