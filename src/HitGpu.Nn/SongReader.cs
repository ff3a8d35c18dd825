// The CSV reader of the dataset's format: the header checked once, then rows parsed by CsvHelper's low-level
// parser straight into float32 arrays, a chunk at a time, so that memory stays flat whatever the file's size
// and the file's text is never held. Every value is checked; the first bad one stops the read with its file,
// line and column. Before the parser: gzip is undone where the bytes are gzip's (the dataset travels as
// .csv.gz), the text is checked to be UTF-8 (or read as Latin-1 when asked) with no line over
// SongReader.MaxLineBytes, and the separator is the one asked for or the one the header uses.
using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using CsvHelper;

namespace HitGpu.Nn;

/// <summary>
/// How a CSV file's text is read: its separator (null: the header's, comma, semicolon or tab, whichever it
/// holds most of) and its encoding (UTF-8, checked; or Latin-1, ISO 8859-1).
/// </summary>
public sealed record CsvFormat(char? Delimiter = null, CsvEncoding Encoding = CsvEncoding.Utf8)
{
    public static readonly CsvFormat Default = new();

    /// <summary>The separators the header is searched for.</summary>
    public static readonly char[] Separators = [',', ';', '\t'];
}

public enum CsvEncoding { Utf8, Latin1 }

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

    /// <summary>The longest line read (1 MiB; a song's line is a few hundred bytes): a longer one is refused at its line number, unread.</summary>
    public const int MaxLineBytes = 1 << 20;

    /// <summary>Opens a CSV file ("-": standard input), gzip-compressed or not; see <see cref="SongData.Parse"/> for the format.</summary>
    /// <param name="keepNames">keep track and artist (only where an output needs them: they cost memory)</param>
    public static SongReader Open(string path, bool requireTarget = true, bool keepNames = true, CsvFormat? format = null)
    {
        if (path == SongData.StandardStream)
            return Over(Console.OpenStandardInput(), "stdin", requireTarget, keepNames, format ?? CsvFormat.Default);
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
        return Over(file, path, requireTarget, keepNames, format ?? CsvFormat.Default);
    }

    /// <summary>Reads CSV bytes held in memory (tests, the embedded file).</summary>
    public static SongReader Over(byte[] bytes, string source, bool requireTarget = true, bool keepNames = true, CsvFormat? format = null) =>
        Over(new MemoryStream(bytes, writable: false), source, requireTarget, keepNames, format ?? CsvFormat.Default);

    private static SongReader Over(Stream stream, string source, bool requireTarget, bool keepNames, CsvFormat format)
    {
        HashingStream? hashing = null;
        try
        {
            // gzip's magic bytes: undo it (streaming); the hash is of the text, so a file and its .gz are the same data.
            var head = new byte[2];
            int got = ReadUpTo(stream, head);
            Stream text = new ReplayStream(stream, head[..got]);
            if (got == 2 && head[0] == 0x1F && head[1] == 0x8B)
                text = new GZipStream(text, CompressionMode.Decompress);
            // The text's start, looked at for emptiness, a byte-order mark and the separator, then read again.
            var start = new byte[1 << 16];
            start = start[..ReadUpTo(text, start)];
            hashing = new HashingStream(new ReplayStream(text, start));
            return new SongReader(hashing, start, source, requireTarget, keepNames, format);
        }
        catch (Exception e)
        {
            ((Stream?)hashing ?? stream).Dispose(); // the outermost stream made so far disposes the ones inside it
            if (e is InvalidDataException)
                throw new InputException($"{source}: the compressed data is damaged ({e.Message.TrimEnd('.')})");
            throw;
        }
    }

    private static int ReadUpTo(Stream stream, Span<byte> into)
    {
        int read = 0, n;
        while (read < into.Length && (n = stream.Read(into[read..])) > 0)
            read += n;
        return read;
    }

    private SongReader(HashingStream stream, ReadOnlySpan<byte> peeked, string source, bool requireTarget, bool keepNames, CsvFormat format)
    {
        this.source = source;
        hash = stream.Hash;
        if (IsEmpty(peeked))
            throw new InputException($"{source}: file is empty (expected a header line and data rows)");
        char separator = format.Delimiter ?? DetectSeparator(peeked);
        // Text that is not UTF-8 becomes UTF-8 before the parser: Latin-1 when asked, UTF-16 when its byte-order mark says so.
        Encoding? from = peeked.StartsWith(new byte[] { 0xFF, 0xFE }) ? Encoding.Unicode : peeked.StartsWith(new byte[] { 0xFE, 0xFF })
            ? Encoding.BigEndianUnicode
            : format.Encoding == CsvEncoding.Latin1 ? Encoding.Latin1 : null;
        Stream text = from is null ? stream : Encoding.CreateTranscodingStream(stream, from, new UTF8Encoding(false), leaveOpen: false);
        reader = CsvReader.Create(new CheckedTextStream(text, source, checkUtf8: from is null), Options with { Separator = separator }, leaveOpen: false);
        try
        {
            header = reader.Headers.Select(h => h.Trim()).ToArray();
        }
        catch (CsvFormatException e)
        {
            reader.Dispose();
            throw Malformed(e);
        }
        catch
        {
            reader.Dispose();
            throw;
        }
        string how = format.Delimiter is null ? $"split at '{Shown(separator)}', the separator it holds most of; CsvFormat.Delimiter names another"
            : $"split at '{Shown(separator)}'";
        string separatorNote = $" (the header, {how}, has {header.Length} column{(header.Length == 1 ? "" : "s")})";
        fieldCount = header.Length;
        int Column(string name) => Array.FindIndex(header, h => string.Equals(h, name, StringComparison.OrdinalIgnoreCase));
        foreach (var name in SongData.FeatureNames.Append(SongData.Target))
            if (header.Count(h => string.Equals(h, name, StringComparison.OrdinalIgnoreCase)) > 1)
                Refuse($"{source}:1: column '{name}' appears twice (which one holds the {(name == SongData.Target ? "target" : "feature")}?)");
        for (int f = 0; f < SongData.FeatureCount; f++)
        {
            featureColumns[f] = Column(SongData.FeatureNames[f]);
            if (featureColumns[f] < 0)
                Refuse($"{source}:1: missing column '{SongData.FeatureNames[f]}'{separatorNote}; the header must name all 15 features: " +
                    $"{string.Join(",", SongData.FeatureNames)}");
        }
        targetColumn = Column(SongData.Target);
        if (requireTarget && targetColumn < 0)
            Refuse($"{source}:1: missing column '{SongData.Target}' (1 = hit, 0 = not a hit)");
        (trackColumn, artistColumn, uriColumn) = (Column("track"), Column("artist"), Column("uri"));
        KeepsNames = keepNames && trackColumn >= 0 && artistColumn >= 0;
        durationFeature = SongData.DurationFeature;
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
            features[at * SongData.FeatureCount + k] = (float)Number(c, line);
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

    /// <summary>A field as a number that <see cref="SongData.ValueProblem"/> accepts.</summary>
    private double Number(int column, long line)
    {
        string name = header[column];
        var text = reader.GetSpan(column);
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
            throw new InputException($"{source}:{line}:{column + 1}: {name} is not a number: '{Text(column)}'");
        if (SongData.ValueProblem(name, value, Text(column), positive: column == featureColumns[durationFeature]) is { } problem)
            throw new InputException($"{source}:{line}:{column + 1}: {problem}");
        return value;
    }

    private string Text(int column) => Encoding.UTF8.GetString(reader.GetSpan(column));

    /// <summary>SHA-256 of the whole file, once it has been read to its end.</summary>
    public string Sha256()
    {
        while (ReadChunk(1 << 16) is not null) { }
        return Convert.ToHexStringLower(hash.GetCurrentHash());
    }

    /// <summary>Whether the file's start (all of it, when it is this short) holds nothing but perhaps a byte-order mark.</summary>
    private static bool IsEmpty(ReadOnlySpan<byte> start) =>
        start.Length == 0 || start.SequenceEqual(new byte[] { 0xEF, 0xBB, 0xBF }) || start.SequenceEqual(new byte[] { 0xFF, 0xFE })
            || start.SequenceEqual(new byte[] { 0xFE, 0xFF });

    /// <summary>The separator the header line holds most of, outside quotes: comma, semicolon or tab (comma when it holds none).</summary>
    private static char DetectSeparator(ReadOnlySpan<byte> start)
    {
        var counts = new int[CsvFormat.Separators.Length];
        bool quoted = false;
        foreach (byte b in start)
        {
            if (b == '\n' && !quoted)
                break;
            if (b == '"')
                quoted = !quoted;
            else if (!quoted)
                for (int i = 0; i < counts.Length; i++)
                    if (b == CsvFormat.Separators[i])
                        counts[i]++;
        }
        int best = 0;
        for (int i = 1; i < counts.Length; i++)
            if (counts[i] > counts[best])
                best = i;
        return CsvFormat.Separators[best];
    }

    private static string Shown(char separator) => separator == '\t' ? "\\t" : separator.ToString();

    public void Dispose() => reader.Dispose();

    /// <summary>A read-only stream that hashes what passes through it.</summary>
    private sealed class HashingStream(Stream inner) : ReadOnlyStream
    {
        public IncrementalHash Hash { get; } = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public override int Read(Span<byte> buffer)
        {
            int n = inner.Read(buffer);
            Hash.AppendData(buffer[..n]);
            return n;
        }

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

    /// <summary>A read-only stream that first gives back bytes already read from <paramref name="inner"/>, then the rest of it.</summary>
    private sealed class ReplayStream(Stream inner, byte[] head) : ReadOnlyStream
    {
        private int at;

        public override int Read(Span<byte> buffer)
        {
            if (at < head.Length)
            {
                int n = Math.Min(buffer.Length, head.Length - at);
                head.AsSpan(at, n).CopyTo(buffer);
                at += n;
                return n;
            }
            return inner.Read(buffer);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                inner.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>
    /// The text on its way to the parser, checked as it passes: valid UTF-8 (when asked), and no line longer than
    /// <see cref="MaxLineBytes"/>; either failure is refused with its line, before that line is read whole.
    /// </summary>
    private sealed class CheckedTextStream(Stream inner, string source, bool checkUtf8) : ReadOnlyStream
    {
        private long line = 1, lineBytes;
        private int pending;            // continuation bytes still due in a UTF-8 sequence that crossed a read
        private byte lead;              // the byte that started it
        private long leadAt;            // and where in its line (from 1)
        private int lowest = 0x80, highest = 0xBF; // the range of the next continuation byte (overlongs and surrogates refused)

        public override int Read(Span<byte> buffer)
        {
            int n;
            try
            {
                n = inner.Read(buffer);
            }
            catch (InvalidDataException e)
            {
                throw new InputException($"{source}:{line}: the compressed data is damaged ({e.Message.TrimEnd('.')})");
            }
            for (int i = 0; i < n; i++)
            {
                byte b = buffer[i];
                if (checkUtf8)
                    Check(b);
                if (b is (byte)'\n' or (byte)'\r') // a line ends at LF, CRLF, or a lone CR (old Mac exports)
                {
                    line += b == (byte)'\n' ? 1 : 0;
                    lineBytes = 0;
                }
                else if (++lineBytes > MaxLineBytes)
                {
                    throw new InputException($"{source}:{line}: line longer than {MaxLineBytes} bytes (1 MiB): not a song file?");
                }
            }
            if (n == 0 && checkUtf8 && pending > 0)
                throw NotUtf8("the file ends inside a character");
            return n;
        }

        private void Check(byte b)
        {
            if (pending > 0)
            {
                if (b < lowest || b > highest)
                    throw NotUtf8($"byte {leadAt} of the line, 0x{lead:X2}, starts a character that 0x{b:X2} does not continue");
                pending--;
                (lowest, highest) = (0x80, 0xBF);
                return;
            }
            if (b < 0x80)
                return;
            lead = b;
            leadAt = lineBytes + 1;
            (pending, lowest, highest) = b switch
            {
                >= 0xC2 and <= 0xDF => (1, 0x80, 0xBF),
                0xE0 => (2, 0xA0, 0xBF),
                0xED => (2, 0x80, 0x9F),
                >= 0xE1 and <= 0xEF => (2, 0x80, 0xBF),
                0xF0 => (3, 0x90, 0xBF),
                >= 0xF1 and <= 0xF3 => (3, 0x80, 0xBF),
                0xF4 => (3, 0x80, 0x8F),
                _ => throw NotUtf8($"byte {lineBytes + 1} of the line, 0x{b:X2}, cannot start a character"),
            };
        }

        private InputException NotUtf8(string what) =>
            new($"{source}:{line}: not UTF-8 text ({what}); if the file is Latin-1 (ISO 8859-1), say so with CsvEncoding.Latin1");

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                inner.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>What every read-only pass-through stream here shares.</summary>
    private abstract class ReadOnlyStream : Stream
    {
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public abstract override int Read(Span<byte> buffer);
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
