// What clients send and get back. Songs come as CSV (read by the CLI's reader, so every refusal has its words,
// file name "request body"), as JSON records ([{"danceability": 0.7, ...}]) or as the Open Inference Protocol's
// tensor ({"inputs": [{"name": "features", "shape": [N, 15], "datatype": "FP32", "data": [...]}]}), its values
// in JSON or in binary after it (the binary tensor data extension). Each value passes SongData.ValueProblem,
// the check every reader shares. Answers are written straight into the response.
using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using CsvHelper;
using HitGpu.Nn;

namespace HitGpu.Serve;

/// <summary>A request the server refuses with a status other than 400: 404, 413, 415 or 503.</summary>
public sealed class RequestRefusedException(int status, string message) : Exception(InputException.OneLine(message))
{
    public int Status { get; } = status;

    public static RequestRefusedException TooManyRows(long rows, int max) =>
        new(StatusCodes.TooLarge, $"request body: {rows} songs, more than the {max} a request may send ({ServeOptions.Named(nameof(ServeOptions.MaxRows))})");
}

internal static class StatusCodes
{
    public const int BadRequest = 400, Unauthorized = 401, NotFound = 404, NotAllowed = 405, RequestTimeout = 408, TooLarge = 413, UnsupportedType = 415,
        Unavailable = 503;
}

/// <summary>Songs of a request: their raw features, and the track and artist names where the client sent both.</summary>
public sealed record SongBatch(float[] Features, string?[]? Tracks, string?[]? Artists, bool OneRecord = false)
{
    public int Count => Features.Length / SongData.FeatureCount;

    public SongTable Table => new() { Source = SongRequests.Source, Features = Features };
}

public static partial class SongRequests
{
    /// <summary>The name errors give the request's body, where the CLI names a file.</summary>
    public const string Source = "request body";

    public const string InputName = "features", OutputName = "probability", Datatype = "FP32";

    /// <summary>The model's one version in the protocol's paths and answers: a server serves one model file, read once.</summary>
    public const string ModelVersion = "1";

    /// <summary>JSON as clients read it: quotes and apostrophes in messages left as they are (the answers are never embedded in HTML).</summary>
    public static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>CSV with a header, as `hitgpu predict` reads it (any column order, separator detected).</summary>
    public static SongBatch ReadCsv(byte[] body, int maxRows)
    {
        // The CLI's reader undoes gzip; a server must not: a small compressed body could unfold past every limit.
        if (body is [0x1F, 0x8B, ..])
            throw new InputException($"{Source}: gzip-compressed: send the CSV as text (the body limit holds for what is sent)");
        using var reader = SongReader.Over(body, Source, requireTarget: false);
        var songs = reader.ReadChunk(maxRows + 1)!; // the reader refuses an empty body or one without rows
        if (songs.Count > maxRows)
            throw RequestRefusedException.TooManyRows(songs.Count, maxRows);
        return new SongBatch(songs.Features, songs.Tracks, songs.Artists);
    }

    /// <summary>
    /// JSON records: an array of objects (or one object), each naming all 15 features (any case, any order)
    /// as numbers, with track and artist optional; other keys are ignored, as the CSV reader ignores other columns.
    /// </summary>
    public static SongBatch ReadRecords(ReadOnlySpan<byte> body, int maxRows)
    {
        RequireUtf8(body);
        body = WithoutBom(body);
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
        var features = new List<float>();
        List<string?>? tracks = null, artists = null;
        try
        {
            if (!reader.Read())
                throw new InputException($"{Source}: empty (expected JSON records: [{{\"danceability\": 0.7, ...}}, ...])");
            bool one = reader.TokenType == JsonTokenType.StartObject;
            if (!one && reader.TokenType != JsonTokenType.StartArray)
                throw new InputException($"{At(body, reader)}: expected an array of songs ([{{\"danceability\": 0.7, ...}}, ...]), got {Token(body, reader)}");
            int songs = 0;
            while (one ? songs == 0 : reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.StartObject)
                    throw new InputException($"{At(body, reader)}: song {songs + 1} is {Token(body, reader)}, not an object of features");
                if (++songs > maxRows)
                    throw RequestRefusedException.TooManyRows(songs, maxRows);
                ReadRecord(body, ref reader, songs, features, ref tracks, ref artists);
            }
            if (!one && reader.TokenType != JsonTokenType.EndArray)
                throw new InputException($"{Source}: the array of songs is not closed");
            if (songs == 0)
                throw new InputException($"{Source}: no songs (an empty array)");
            if (reader.Read())
                throw new InputException($"{At(body, reader)}: more after the songs' JSON ended: {Token(body, reader)}");
            return new SongBatch([.. features], tracks?.ToArray(), artists?.ToArray(), one);
        }
        catch (JsonException e)
        {
            throw Malformed(e);
        }
    }

    private static void ReadRecord(ReadOnlySpan<byte> body, ref Utf8JsonReader reader, int song, List<float> features, ref List<string?>? tracks,
        ref List<string?>? artists)
    {
        long start = reader.TokenStartIndex;
        Span<float> values = stackalloc float[SongData.FeatureCount];
        Span<bool> seen = stackalloc bool[SongData.FeatureCount];
        string? track = null, artist = null;
        Span<byte> unescaped = stackalloc byte[MaxKeyBytes];
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            // The key's bytes, compared without a string of them: a string per key would cost more than the body.
            var key = reader.ValueIsEscaped || reader.HasValueSequence
                ? reader.ValueSpan.Length <= MaxKeyBytes ? unescaped[..reader.CopyString(unescaped)] : default
                : reader.ValueSpan;
            int feature = FeatureOf(key);
            bool name = !key.IsEmpty && (Ascii.EqualsIgnoreCase(key, "track"u8) || Ascii.EqualsIgnoreCase(key, "artist"u8));
            reader.Read();
            if (feature >= 0)
            {
                if (seen[feature])
                    throw new InputException($"{At(body, reader)}: song {song} names '{SongData.FeatureNames[feature]}' twice");
                seen[feature] = true;
                values[feature] = Value(body, reader, key, feature);
            }
            else if (name)
            {
                bool isTrack = Ascii.EqualsIgnoreCase(key, "track"u8); // any case, as the features and the CSV columns
                string field = isTrack ? "track" : "artist";
                if (reader.TokenType is not (JsonTokenType.String or JsonTokenType.Null))
                    throw new InputException($"{At(body, reader)}: song {song}'s {field} must be a string, got {Token(body, reader)}");
                (isTrack ? ref track : ref artist) = reader.TokenType == JsonTokenType.Null ? null : reader.GetString();
            }
            else
            {
                reader.Skip();
            }
        }
        int missing = seen.IndexOf(false);
        if (missing >= 0)
            throw new InputException($"{At(body, start)}: song {song} has no '{SongData.FeatureNames[missing]}'; each song must name all 15 " +
                $"features: {string.Join(",", SongData.FeatureNames)}");
        foreach (float v in values)
            features.Add(v);
        if (track is not null || artist is not null)
        {
            (tracks, artists) = (tracks ?? [.. new string?[song - 1]], artists ?? [.. new string?[song - 1]]);
        }
        tracks?.Add(track);
        artists?.Add(artist);
    }

    /// <summary>A JSON value as a feature (the reader's token): a number that <see cref="SongData.ValueProblem"/> accepts.</summary>
    private static float Value(ReadOnlySpan<byte> body, Utf8JsonReader reader, ReadOnlySpan<byte> name, int feature) =>
        reader.TokenType == JsonTokenType.Number && reader.TryGetDouble(out double number) && Plain(number, feature)
            ? (float)number
            : Feature(At(body, reader), Encoding.UTF8.GetString(name), feature, reader.TokenType == JsonTokenType.Number, Token(body, reader));

    /// <summary>A key longer than this (unescaped) names no feature, nor track or artist.</summary>
    private const int MaxKeyBytes = 64;

    private static readonly byte[][] FeatureKeys = [.. SongData.FeatureNames.Select(Encoding.UTF8.GetBytes)];

    /// <summary>The feature a record's key names, in any case (the names are ASCII), or -1.</summary>
    private static int FeatureOf(ReadOnlySpan<byte> key)
    {
        for (int f = 0; !key.IsEmpty && f < FeatureKeys.Length; f++)
            if (Ascii.EqualsIgnoreCase(FeatureKeys[f], key))
                return f;
        return -1;
    }

    /// <summary>
    /// A value as the client wrote it (<paramref name="text"/>), as a feature, or the refusal in the CLI's words
    /// at <paramref name="where"/>: the slow path of every JSON value that is not <see cref="Plain"/>.
    /// </summary>
    private static float Feature(string where, string name, int feature, bool isNumber, string text)
    {
        if (!isNumber || !double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
            throw new InputException($"{where}: {name} is not a number: '{text}'");
        if (SongData.ValueProblem(name, value, text, positive: feature == SongData.DurationFeature) is { } problem)
            throw new InputException($"{where}: {problem}");
        return (float)value;
    }

    /// <summary>
    /// A value <see cref="SongData.ValueProblem"/> surely accepts, checked without its text: the common case,
    /// kept free of strings (a 256-song tensor has 3,840 values). Any other goes through ValueProblem itself.
    /// </summary>
    private static bool Plain(double value, int feature) =>
        Math.Abs(value) <= float.MaxValue && (feature != SongData.DurationFeature || (float)value > 0f);

    /// <summary>The answer in the request's form: one record per song (an object for a one-object request), with the contributions where explained.</summary>
    public static void WriteRecords(IBufferWriter<byte> output, SongBatch songs, float[] probabilities, Attributions? explained)
    {
        using var json = new Utf8JsonWriter(output, WriterOptions);
        if (!songs.OneRecord)
            json.WriteStartArray();
        for (int i = 0; i < probabilities.Length; i++)
        {
            json.WriteStartObject();
            if (songs.Tracks?[i] is { } track)
                json.WriteString("track", track);
            if (songs.Artists?[i] is { } artist)
                json.WriteString("artist", artist);
            json.WriteNumber("probability", probabilities[i]);
            json.WriteString("prediction", PredictionOutput.Verdict(probabilities[i]));
            if (explained is not null)
            {
                json.WriteNumber("baseline_probability", explained.BaselineProbability);
                json.WriteStartObject("contributions");
                var contributions = explained.Of(i);
                for (int f = 0; f < SongData.FeatureCount; f++)
                    json.WriteNumber(SongData.FeatureNames[f], contributions[f]);
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        if (!songs.OneRecord)
            json.WriteEndArray();
    }

    /// <summary>The CSV `hitgpu predict` writes (track, artist or row; probability; prediction), and with explanations `hitgpu explain`'s columns after
    /// it.</summary>
    public static string WriteCsv(SongBatch songs, float[] probabilities, Attributions? explained)
    {
        var text = new StringWriter(CultureInfo.InvariantCulture);
        using (var csv = CsvWriter.Create(text, SongData.WriterOptions, leaveOpen: true))
        {
            bool names = songs.Tracks is not null && songs.Artists is not null;
            string[] header = PredictionOutput.CsvHeader(names);
            csv.WriteRecord(explained is null ? header : [.. header, "baseline_probability", .. SongData.FeatureNames]);
            for (int i = 0; i < probabilities.Length; i++)
            {
                PredictionOutput.WriteCsvFields(csv, names, songs.Tracks?[i], songs.Artists?[i], i + 1, probabilities[i]);
                if (explained is not null)
                {
                    csv.WriteField(explained.BaselineProbability, "F6");
                    foreach (float c in explained.Of(i))
                        csv.WriteField(c, "F6");
                }
                csv.EndRecord();
            }
        }
        return text.ToString();
    }

    private static ReadOnlySpan<byte> Bom => [0xEF, 0xBB, 0xBF];

    /// <summary>The body without a UTF-8 byte-order mark (which some editors write, and the JSON reader refuses).</summary>
    public static ReadOnlySpan<byte> WithoutBom(ReadOnlySpan<byte> body) => body.StartsWith(Bom) ? body[Bom.Length..] : body;

    /// <summary>JSON is UTF-8 (RFC 8259): a body that is not is refused where its first bad byte is, before any string of it is read.</summary>
    private static void RequireUtf8(ReadOnlySpan<byte> body)
    {
        if (System.Text.Unicode.Utf8.IsValid(body))
            return; // the common case, vectorised; a body that is not UTF-8 is decoded to find where it stops being so
        var text = new char[Math.Min(body.Length, 1 << 16)];
        for (int done = 0; done < body.Length;)
        {
            var status = System.Text.Unicode.Utf8.ToUtf16(body[done..], text, out int read, out _, replaceInvalidSequences: false, isFinalBlock: true);
            done += read;
            if (status == OperationStatus.InvalidData)
                throw new InputException($"{At(body, done)}: not UTF-8 text (JSON must be UTF-8)");
            if (status == OperationStatus.Done)
                return;
        }
    }

    private static InputException Malformed(JsonException e) =>
        new($"{Source}:{e.LineNumber + 1 ?? 1}:{e.BytePositionInLine + 1 ?? 1}: malformed JSON: " +
            $"{e.Message.Split(" LineNumber:")[0].Split(" Path:")[0].Trim()}");

    /// <summary>"request body:LINE:COLUMN" of the reader's token, as the CSV reader names a field.</summary>
    private static string At(ReadOnlySpan<byte> body, in Utf8JsonReader reader) => At(body, reader.TokenStartIndex);

    private static string At(ReadOnlySpan<byte> body, long offset)
    {
        var before = body[..(int)Math.Min(offset, body.Length)];
        int line = before.Count((byte)'\n') + 1, column = before.Length - (before.LastIndexOf((byte)'\n') + 1) + 1;
        return $"{Source}:{line}:{column}";
    }

    /// <summary>The reader's token as the client wrote it (a string with its quotes; an object or array as its kind).</summary>
    private static string Token(ReadOnlySpan<byte> body, in Utf8JsonReader reader) => reader.TokenType switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        _ => InputException.OneLine(Encoding.UTF8.GetString(body.Slice((int)reader.TokenStartIndex, TokenLength(reader)))),
    };

    private static int TokenLength(in Utf8JsonReader reader) =>
        (reader.HasValueSequence ? (int)reader.ValueSequence.Length : reader.ValueSpan.Length) + (reader.TokenType == JsonTokenType.String ? 2 : 0);

    private static string Kind(JsonTokenType token) => token switch
    {
        JsonTokenType.StartObject => "an object",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        _ => "null",
    };

    /// <summary>An output as errors name it: its name as JsonElement.ToString gives it (a string's text, True, a number's text), or its kind.</summary>
    private static string Describe(ReadOnlySpan<byte> json, Utf8JsonReader output) =>
        output.TokenType == JsonTokenType.StartObject && TryProperty(output, "name"u8, out var name)
            ? $"'{InputException.OneLine(name.TokenType switch
            {
                JsonTokenType.String => name.GetString()!,
                JsonTokenType.True => bool.TrueString,
                JsonTokenType.False => bool.FalseString,
                JsonTokenType.Null => "",
                _ => Raw(json, name),
            })}'"
            : Kind(output.TokenType);
}
