// What clients send and get back. Songs come as CSV (read by the CLI's reader, so every refusal has its words,
// file name "request body"), as JSON records ([{"danceability": 0.7, ...}]) or as the Open Inference Protocol's
// tensor ({"inputs": [{"name": "features", "shape": [N, 15], "datatype": "FP32", "data": [...]}]}), its values
// in JSON or in binary after it (the binary tensor data extension). Each value passes SongData.ValueProblem,
// the check every reader shares. Answers are written straight into the response.
using System.Buffers;
using System.Buffers.Binary;
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
        new(StatusCodes.TooLarge, $"request body: {rows} songs, more than the {max} a request may send (--max-rows)");
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

public static class SongRequests
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

    /// <summary>The binary tensor data extension's header: the length of the JSON that binary values follow.</summary>
    public const string HeaderLengthName = "Inference-Header-Content-Length";

    /// <summary>An inference request: its id, the songs of its one input tensor, and whether its output is asked in binary.</summary>
    public sealed record InferRequest(string? Id, float[] Features, bool BinaryOutput);

    /// <summary>
    /// The Open Inference Protocol's request. With <paramref name="headerLength"/> (the request's
    /// Inference-Header-Content-Length), the body is that many bytes of JSON, then the input's values in binary
    /// (FP32, little-endian, row-major: the binary tensor data extension, as Triton and KServe give it).
    /// </summary>
    public static InferRequest ReadInfer(ReadOnlyMemory<byte> body, int maxRows, string? headerLength = null)
    {
        ReadOnlyMemory<byte> binary = default;
        if (headerLength is not null)
        {
            if (!int.TryParse(headerLength, NumberStyles.None, CultureInfo.InvariantCulture, out int length))
                throw new InputException($"{HeaderLengthName} must be the JSON header's length in bytes, got '{InputException.OneLine(headerLength)}'");
            if (length > body.Length)
                throw new InputException($"{Source}: {HeaderLengthName} is {length}, but the body has {body.Length} bytes");
            (body, binary) = (body[..length], body[length..]);
        }
        RequireUtf8(body.Span);
        if (body.Span.StartsWith(Bom))
            body = body[Bom.Length..];
        var json = body.Span;
        // Read straight from the body's bytes, no document tree: a first pass checks the syntax and the keys, the
        // second finds the request's parts (reader copies, positioned at each) and reads the values into the tensor.
        RequireUniqueKeys(json);
        var reader = new Utf8JsonReader(json, ReaderOptions);
        reader.Read();
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new InputException($"{Source}: expected an inference request object ({{\"inputs\": [...]}}), got {Kind(reader.TokenType)}");
        var root = reader;
        bool hasId = TryProperty(root, "id"u8, out var id), hasOutputs = TryProperty(root, "outputs"u8, out var outputs);
        bool hasInputs = TryProperty(root, "inputs"u8, out var inputs);
        string? requestId = null;
        if (hasId && id.TokenType != JsonTokenType.Null)
            requestId = id.TokenType == JsonTokenType.String ? id.GetString()
                : throw new InputException($"{Source}: id must be a string, got {Kind(id.TokenType)}");
        // Outputs in binary: all of them on the request's binary_data_output, unless the output's binary_data says otherwise.
        bool binaryOutput = Flag(json, root, "binary_data_output") ?? false;
        if (hasOutputs)
        {
            if (outputs.TokenType != JsonTokenType.StartArray)
                throw new InputException($"{Source}: outputs must be an array, got {Kind(outputs.TokenType)}");
            while (outputs.Read() && outputs.TokenType != JsonTokenType.EndArray)
            {
                var output = outputs;
                if (output.TokenType != JsonTokenType.StartObject || !TryProperty(output, "name"u8, JsonTokenType.String, out var name)
                    || !name.ValueTextEquals(OutputName))
                    throw UnknownOutput(Describe(json, output));
                binaryOutput = Flag(json, output, "binary_data") ?? binaryOutput;
                outputs.Skip();
            }
        }
        if (!hasInputs || inputs.TokenType != JsonTokenType.StartArray)
            throw new
                InputException($"{Source}: the request needs \"inputs\", an array with one tensor, '{InputName}' ({Datatype}, [-1, {SongData.FeatureCount}])");
        var first = inputs;
        int count = 0;
        while (inputs.Read() && inputs.TokenType != JsonTokenType.EndArray)
        {
            if (count++ == 0)
                first = inputs;
            inputs.Skip();
        }
        RequireOneInput(count);
        return new InferRequest(requestId, ReadTensor(json, first, maxRows, headerLength is not null, binary.Span), binaryOutput);
    }

    private static readonly JsonReaderOptions ReaderOptions = new() { CommentHandling = JsonCommentHandling.Skip };

    /// <summary>Finds an object's property (<paramref name="value"/>: a reader at its value); <paramref name="owner"/> is at the object's start.</summary>
    private static bool TryProperty(Utf8JsonReader owner, ReadOnlySpan<byte> name, out Utf8JsonReader value)
    {
        while (owner.Read() && owner.TokenType == JsonTokenType.PropertyName)
        {
            bool match = owner.ValueTextEquals(name);
            owner.Read();
            if (match)
            {
                value = owner;
                return true;
            }
            owner.Skip();
        }
        value = default;
        return false;
    }

    /// <summary>Finds an object's property of the given kind (the first token of its value).</summary>
    private static bool TryProperty(Utf8JsonReader owner, ReadOnlySpan<byte> name, JsonTokenType kind, out Utf8JsonReader value) =>
        TryProperty(owner, name, out value) && value.TokenType == kind;

    /// <summary>A boolean of an object's "parameters" (null where not given), refused if it is not one.</summary>
    private static bool? Flag(ReadOnlySpan<byte> json, Utf8JsonReader owner, string name)
    {
        if (!TryProperty(owner, "parameters"u8, JsonTokenType.StartObject, out var parameters)
            || !TryProperty(parameters, Encoding.UTF8.GetBytes(name), out var flag))
            return null;
        return flag.TokenType switch
        {
            JsonTokenType.True => true,
            JsonTokenType.False => false,
            _ => throw new InputException($"{Source}: {name} must be true or false, got {InputException.OneLine(Raw(json, flag))}"),
        };
    }

    /// <summary>
    /// Refuses a key given twice in one object, where the second is, as the records' reader refuses a feature
    /// twice: JSON readers differ on which one counts (RFC 8259, 4), so a proxy or a log could read another
    /// request than the one scored. The whole body is read first: malformed JSON is said before a duplicate.
    /// </summary>
    private static void RequireUniqueKeys(ReadOnlySpan<byte> body)
    {
        var reader = new Utf8JsonReader(body, ReaderOptions);
        var objects = new Stack<HashSet<string>>();
        InputException? twice = null;
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.StartObject)
                    objects.Push(new HashSet<string>(StringComparer.Ordinal));
                else if (reader.TokenType == JsonTokenType.EndObject)
                    objects.Pop();
                else if (reader.TokenType == JsonTokenType.PropertyName && twice is null && !objects.Peek().Add(reader.GetString()!))
                    twice = new InputException(
                        $"{At(body, reader)}: '{reader.GetString()}' given twice in one object (JSON readers differ on which one counts)");
            }
        }
        catch (JsonException e)
        {
            throw Malformed(e);
        }
        if (twice is not null)
            throw twice;
    }

    /// <param name="input">The reader at the tensor's start.</param>
    /// <param name="headed">Whether the request gave its JSON header's length (then <paramref name="binary"/> holds the bytes after it).</param>
    private static float[] ReadTensor(ReadOnlySpan<byte> json, Utf8JsonReader input, int maxRows, bool headed, ReadOnlySpan<byte> binary)
    {
        if (input.TokenType != JsonTokenType.StartObject)
            throw new InputException($"{Source}: inputs[0] must be a tensor object, got {Kind(input.TokenType)}");
        string name = TryProperty(input, "name"u8, JsonTokenType.String, out var n) ? n.GetString()! : "";
        string datatype = TryProperty(input, "datatype"u8, JsonTokenType.String, out var d) ? d.GetString()! : "";
        bool hasShape = TryProperty(input, "shape"u8, out var shape);
        long rows = InputRows(name, datatype, hasShape && shape.TokenType == JsonTokenType.StartArray ? Dimensions(shape) : null,
            hasShape ? Raw(json, shape) : "none", maxRows);
        Utf8JsonReader size = default;
        bool binaryInput = TryProperty(input, "parameters"u8, JsonTokenType.StartObject, out var parameters)
            && TryProperty(parameters, "binary_data_size"u8, out size);
        if (binaryInput && !headed)
            throw new InputException($"{Source}: input '{InputName}' has binary_data_size, but the request has no {HeaderLengthName} header to " +
                $"say where its bytes begin");
        if (!binaryInput && binary.Length > 0)
            throw new InputException($"{Source}: {binary.Length} bytes follow the JSON header, but no input has binary_data_size");
        bool hasData = TryProperty(input, "data"u8, out var values);
        if (binaryInput)
            return ReadBinary(json, size, hasData, rows, binary);
        if (!hasData || values.TokenType != JsonTokenType.StartArray)
            throw new InputException($"{InputPlace}: the tensor needs \"data\", an array of {rows} x {SongData.FeatureCount} numbers");
        // Counted before anything is allocated: a short request must not reserve what its shape claims.
        long needed = RequireValues("data", Values(json, values, null, InputPlace), rows);
        var features = new float[needed];
        Values(json, values, features, InputPlace);
        return features;
    }

    /// <summary>Where a refusal of the input tensor's says it is, in every protocol.</summary>
    public static readonly string InputPlace = $"{Source}: input '{InputName}'";

    /// <summary>
    /// The songs of an input tensor of this name, datatype and shape, or the refusal every protocol gives (REST's
    /// JSON, gRPC): the one input, <see cref="InputName"/>, <see cref="Datatype"/>, [N, 15], 1 to <paramref name="maxRows"/> songs.
    /// </summary>
    /// <param name="shape">Its dimensions; null where they are not all integers (<paramref name="shapeText"/> says what came).</param>
    public static int InputRows(string name, string datatype, IReadOnlyList<long>? shape, string shapeText, int maxRows)
    {
        if (name != InputName)
            throw new InputException(
                $"{Source}: unknown input '{InputException.OneLine(name)}': the model takes one input, '{InputName}' " +
                $"({Datatype}, [-1, {SongData.FeatureCount}])");
        if (datatype != Datatype)
            throw new InputException($"{InputPlace}: datatype must be {Datatype}, got '{InputException.OneLine(datatype)}'");
        if (shape is not [long rows, SongData.FeatureCount] || rows < 0)
            throw new InputException($"{InputPlace}: shape must be [N, {SongData.FeatureCount}] (N songs), got {InputException.OneLine(shapeText)}");
        if (rows == 0)
            throw new InputException($"{InputPlace}: no songs (shape [0, {SongData.FeatureCount}])");
        if (rows > maxRows)
            throw RequestRefusedException.TooManyRows(rows, maxRows);
        return (int)rows;
    }

    /// <summary>Refuses a request with other than one input tensor (the model takes one).</summary>
    public static void RequireOneInput(int inputs)
    {
        if (inputs != 1)
            throw new InputException($"{Source}: the model takes one input, '{InputName}'; the request has {inputs}");
    }

    /// <summary>The refusal of an output the model does not give (<paramref name="asked"/>: its name in quotes, or what came instead).</summary>
    public static InputException UnknownOutput(string asked) => new($"{Source}: unknown output {asked}: the model gives one output, '{OutputName}'");

    /// <summary>The values <paramref name="rows"/> songs need, or the refusal of a tensor whose <paramref name="field"/> holds another count.</summary>
    public static long RequireValues(string field, long count, long rows)
    {
        long needed = rows * SongData.FeatureCount;
        if (count != needed)
            throw new InputException($"{InputPlace}: {field} has {count} values, the shape [{rows}, {SongData.FeatureCount}] needs {needed}");
        return needed;
    }

    /// <summary>Refuses binary values whose <paramref name="field"/> gives other than the bytes of <paramref name="rows"/> songs in FP32.</summary>
    public static void RequireBytes(string field, long bytes, long rows)
    {
        long needed = rows * SongData.FeatureCount * sizeof(float);
        if (bytes != needed)
            throw new InputException($"{InputPlace}: {field} is {bytes}, the shape [{rows}, {SongData.FeatureCount}] of {Datatype} needs {needed}");
    }

    /// <summary>A shape's dimensions (the reader at its array), or null where one is not an integer.</summary>
    private static long[]? Dimensions(Utf8JsonReader shape)
    {
        var dimensions = new List<long>(2);
        bool integers = true;
        while (shape.Read() && shape.TokenType != JsonTokenType.EndArray)
        {
            if (shape.TokenType == JsonTokenType.Number && shape.TryGetInt64(out long value))
                dimensions.Add(value);
            else
                integers = false;
            shape.Skip();
        }
        return integers ? [.. dimensions] : null;
    }

    /// <summary>A tensor's values in binary: <paramref name="rows"/> x 15 FP32, little-endian, each checked as a JSON value is.</summary>
    private static float[] ReadBinary(ReadOnlySpan<byte> json, Utf8JsonReader size, bool alsoData, long rows, ReadOnlySpan<byte> binary)
    {
        if (alsoData)
            throw new InputException($"{InputPlace}: both \"data\" and binary_data_size: send the values one way");
        if (size.TokenType != JsonTokenType.Number || !size.TryGetInt64(out long bytes) || bytes < 0)
            throw new InputException($"{InputPlace}: binary_data_size must be a count of bytes, got {InputException.OneLine(Raw(json, size))}");
        RequireBytes("binary_data_size", bytes, rows);
        if (binary.Length != bytes)
            throw new InputException($"{InputPlace}: {binary.Length} bytes follow the JSON header, binary_data_size says {bytes}");
        return FromLittleEndian(binary);
    }

    /// <summary>
    /// Songs' values as FP32, little-endian, row-major (the binary tensor data extension's, gRPC's raw_input_contents),
    /// each checked (<see cref="Checked"/>); <paramref name="binary"/> holds whole songs.
    /// </summary>
    public static float[] FromLittleEndian(ReadOnlySpan<byte> binary)
    {
        var features = new float[binary.Length / sizeof(float)];
        for (int i = 0; i < features.Length; i++)
            features[i] = BinaryPrimitives.ReadSingleLittleEndian(binary[(i * sizeof(float))..]);
        return Checked(features);
    }

    /// <summary>Row-major songs' float32 values, each checked as every reader checks one (<see cref="SongData.ValueProblem"/>).</summary>
    public static float[] Checked(float[] features)
    {
        for (int i = 0; i < features.Length; i++)
        {
            int feature = i % SongData.FeatureCount;
            if (!Plain(features[i], feature))
                Feature($"{InputPlace}: song {i / SongData.FeatureCount + 1}", SongData.FeatureNames[feature], feature, isNumber: true,
                    features[i].ToString("R", CultureInfo.InvariantCulture));
        }
        return features;
    }

    /// <summary>
    /// The values of an array (the reader at its start), flat or nested as the protocol allows, row-major:
    /// counted when <paramref name="features"/> is null, else read into it (as many as it holds: counted before).
    /// </summary>
    private static long Values(ReadOnlySpan<byte> json, Utf8JsonReader array, float[]? features, string where)
    {
        long count = 0;
        for (int depth = 1; depth > 0 && array.Read();)
        {
            switch (array.TokenType)
            {
                case JsonTokenType.StartArray:
                    depth++;
                    continue;
                case JsonTokenType.EndArray:
                    depth--;
                    continue;
            }
            if (features is not null)
            {
                int feature = (int)(count % SongData.FeatureCount);
                features[count] = array.TokenType == JsonTokenType.Number && array.TryGetDouble(out double number) && Plain(number, feature) ? (float)number
                    : Feature($"{where}: song {count / SongData.FeatureCount + 1}", SongData.FeatureNames[feature], feature,
                        array.TokenType == JsonTokenType.Number, Raw(json, array));
            }
            array.Skip(); // an object is one value, as a number is
            count++;
        }
        return count;
    }

    /// <summary>A value as the client wrote it (the reader at its first token): a string with its quotes, an object or array whole.</summary>
    private static string Raw(ReadOnlySpan<byte> json, Utf8JsonReader value)
    {
        long start = value.TokenStartIndex;
        value.Skip();
        return Encoding.UTF8.GetString(json[(int)start..(int)value.BytesConsumed]);
    }

    /// <summary>
    /// The answer's JSON; with <paramref name="binary"/>, the output's values are left out of it (its
    /// binary_data_size gives their bytes), for <see cref="WriteBinary"/> to follow.
    /// </summary>
    public static void WriteInfer(IBufferWriter<byte> output, string model, string? id, float[] probabilities, bool binary = false)
    {
        using var json = new Utf8JsonWriter(output, WriterOptions);
        json.WriteStartObject();
        json.WriteString("model_name", model);
        json.WriteString("model_version", ModelVersion);
        if (id is not null)
            json.WriteString("id", id);
        json.WriteStartArray("outputs");
        json.WriteStartObject();
        WriteTensorHead(json, OutputName, probabilities.Length, 1);
        if (binary)
        {
            json.WriteStartObject("parameters");
            json.WriteNumber("binary_data_size", probabilities.Length * sizeof(float));
            json.WriteEndObject();
        }
        else
        {
            json.WriteStartArray("data");
            foreach (float p in probabilities)
                json.WriteNumberValue(p);
            json.WriteEndArray();
        }
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
    }

    /// <summary>Values as the binary tensor data extension sends them: FP32, little-endian, in order.</summary>
    public static void WriteBinary(IBufferWriter<byte> output, float[] values)
    {
        var bytes = output.GetSpan(values.Length * sizeof(float));
        for (int i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteSingleLittleEndian(bytes[(i * sizeof(float))..], values[i]);
        output.Advance(values.Length * sizeof(float));
    }

    /// <summary>A tensor's name, datatype (FP32) and shape [rows, width], as the protocol's metadata and answers give them (-1: any number of rows).</summary>
    public static void WriteTensorHead(Utf8JsonWriter json, string name, long rows, int width)
    {
        json.WriteString("name", name);
        json.WriteString("datatype", Datatype);
        json.WriteStartArray("shape");
        json.WriteNumberValue(rows);
        json.WriteNumberValue(width);
        json.WriteEndArray();
    }

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
