// The Open Inference Protocol's tensors: an inference request read from its bytes (JSON, and the binary tensor
// data extension), the input checks the gRPC service shares, and the answer written back.
using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using HitGpu.Nn;

namespace HitGpu.Serve;

public static partial class SongRequests
{
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
        // Read straight from the body's bytes, no document tree: one pass checks the syntax and the keys and finds
        // the request's parts (reader copies, positioned at each); then the values are counted and read into the tensor.
        var parts = Scan(json);
        if (parts.Root.TokenType != JsonTokenType.StartObject)
            throw new InputException($"{Source}: expected an inference request object ({{\"inputs\": [...]}}), got {Kind(parts.Root.TokenType)}");
        string? requestId = null;
        if (parts.Has(Part.Id) && parts.Id.TokenType != JsonTokenType.Null)
            requestId = parts.Id.TokenType == JsonTokenType.String ? parts.Id.GetString()
                : throw new InputException($"{Source}: id must be a string, got {Kind(parts.Id.TokenType)}");
        // Outputs in binary: all of them on the request's binary_data_output, unless the output's binary_data says otherwise.
        bool binaryOutput = (parts.Has(Part.Parameters) ? Flag(json, parts.Parameters, "binary_data_output") : null) ?? false;
        if (parts.Has(Part.Outputs))
        {
            var outputs = parts.Outputs;
            if (outputs.TokenType != JsonTokenType.StartArray)
                throw new InputException($"{Source}: outputs must be an array, got {Kind(outputs.TokenType)}");
            while (outputs.Read() && outputs.TokenType != JsonTokenType.EndArray)
            {
                var output = outputs;
                if (output.TokenType != JsonTokenType.StartObject || !TryProperty(output, "name"u8, JsonTokenType.String, out var name)
                    || !name.ValueTextEquals(OutputName))
                    throw UnknownOutput(Describe(json, output));
                binaryOutput = (TryProperty(output, "parameters"u8, out var parameters) ? Flag(json, parameters, "binary_data") : null) ?? binaryOutput;
                outputs.Skip();
            }
        }
        if (!parts.Has(Part.Inputs) || parts.Inputs.TokenType != JsonTokenType.StartArray)
            throw new
                InputException($"{Source}: the request needs \"inputs\", an array with one tensor, '{InputName}' ({Datatype}, [-1, {SongData.FeatureCount}])");
        RequireOneInput(parts.InputCount);
        return new InferRequest(requestId, ReadTensor(json, ref parts, maxRows, headerLength is not null, binary.Span), binaryOutput);
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

    /// <summary>A boolean of a "parameters" value (null where not given), refused if it is not one.</summary>
    private static bool? Flag(ReadOnlySpan<byte> json, Utf8JsonReader parameters, string name)
    {
        if (parameters.TokenType != JsonTokenType.StartObject || !TryProperty(parameters, Encoding.UTF8.GetBytes(name), out var flag))
            return null;
        return flag.TokenType switch
        {
            JsonTokenType.True => true,
            JsonTokenType.False => false,
            _ => throw new InputException($"{Source}: {name} must be true or false, got {InputException.OneLine(Raw(json, flag))}"),
        };
    }

    /// <summary>The parts of a request <see cref="Scan"/> finds: the root's and its first input tensor's properties.</summary>
    private enum Part { Id, Outputs, Inputs, Parameters, Name, Datatype, Shape, InputParameters, Data, None }

    /// <summary>A request's parts, each a reader at its value's first token (where <see cref="Has"/>), its inputs and data values counted.</summary>
    private ref struct InferParts
    {
        public Utf8JsonReader Root, Id, Outputs, Inputs, Parameters, FirstInput, Name, Datatype, Shape, InputParameters, Data;
        public int InputCount;
        public long DataValues; // the first input's "data" values, flat or nested, as <see cref="Values"/> reads them
        private int found;

        public readonly bool Has(Part part) => (found & (1 << (int)part)) != 0;

        public void Set(Part part, Utf8JsonReader at)
        {
            found |= 1 << (int)part;
            switch (part)
            {
                case Part.Id: Id = at; break;
                case Part.Outputs: Outputs = at; break;
                case Part.Inputs: Inputs = at; break;
                case Part.Parameters: Parameters = at; break;
                case Part.Name: Name = at; break;
                case Part.Datatype: Datatype = at; break;
                case Part.Shape: Shape = at; break;
                case Part.InputParameters: InputParameters = at; break;
                case Part.Data: Data = at; break;
            }
        }
    }

    /// <summary>Counts a token within the data array as <see cref="Values"/> reads it: nested arrays are its rows, an object one value.</summary>
    private static void CountValue(ref InferParts parts, JsonTokenType token, int depth, ref int dataDepth, ref int valueObjectDepth)
    {
        if (valueObjectDepth >= 0)
            valueObjectDepth = token == JsonTokenType.EndObject && depth == valueObjectDepth ? -1 : valueObjectDepth;
        else if (token == JsonTokenType.EndArray)
            dataDepth = depth == dataDepth ? -1 : dataDepth;
        else if (token != JsonTokenType.StartArray)
        {
            parts.DataValues++;
            valueObjectDepth = token == JsonTokenType.StartObject ? depth : -1;
        }
    }

    private static Part RootPart(ref Utf8JsonReader name) =>
        name.ValueTextEquals("id"u8) ? Part.Id : name.ValueTextEquals("outputs"u8) ? Part.Outputs : name.ValueTextEquals("inputs"u8) ? Part.Inputs
        : name.ValueTextEquals("parameters"u8) ? Part.Parameters : Part.None;

    private static Part TensorPart(ref Utf8JsonReader name) =>
        name.ValueTextEquals("name"u8) ? Part.Name : name.ValueTextEquals("datatype"u8) ? Part.Datatype : name.ValueTextEquals("shape"u8) ? Part.Shape
        : name.ValueTextEquals("parameters"u8) ? Part.InputParameters : name.ValueTextEquals("data"u8) ? Part.Data : Part.None;

    /// <summary>
    /// The one pass over the whole body: checks the syntax, refuses a key given twice in one object (where the
    /// second is, as the records' reader refuses a feature twice: JSON readers differ on which one counts, RFC
    /// 8259, 4, so a proxy or a log could read another request than the one scored; malformed JSON is said
    /// first), and finds the request's parts: the root's properties, and those of its first input.
    /// </summary>
    private static InferParts Scan(ReadOnlySpan<byte> body)
    {
        var reader = new Utf8JsonReader(body, ReaderOptions);
        var parts = new InferParts();
        var objects = new Stack<HashSet<string>>();
        InputException? twice = null;
        var next = Part.None;                // the part whose value the next token starts
        bool inInputs = false, inFirst = false;
        int dataDepth = -1, valueObjectDepth = -1; // within the data array (its depth); within an object that is one of its values
        try
        {
            if (reader.Read())
                parts.Root = reader;
            do
            {
                var token = reader.TokenType;
                int depth = reader.CurrentDepth;
                if (next != Part.None)
                {
                    parts.Set(next, reader);
                    inInputs |= next == Part.Inputs && token == JsonTokenType.StartArray;
                    dataDepth = next == Part.Data && token == JsonTokenType.StartArray ? depth : dataDepth;
                    next = Part.None;
                }
                else if (dataDepth >= 0)
                    CountValue(ref parts, token, depth, ref dataDepth, ref valueObjectDepth);
                else if (inInputs && depth == 2 && token is not (JsonTokenType.EndArray or JsonTokenType.EndObject))
                {
                    if (parts.InputCount++ == 0)
                    {
                        parts.FirstInput = reader;
                        inFirst = token == JsonTokenType.StartObject;
                    }
                }
                switch (token)
                {
                    case JsonTokenType.StartObject:
                        objects.Push(new HashSet<string>(StringComparer.Ordinal));
                        break;
                    case JsonTokenType.EndObject:
                        objects.Pop();
                        inFirst &= depth != 2;
                        break;
                    case JsonTokenType.EndArray:
                        inInputs &= depth != 1;
                        break;
                    case JsonTokenType.PropertyName:
                        if (depth == 1)
                            next = RootPart(ref reader);
                        else if (inFirst && depth == 3)
                            next = TensorPart(ref reader);
                        if (twice is null && !objects.Peek().Add(reader.GetString()!))
                            twice = new InputException(
                                $"{At(body, reader)}: '{reader.GetString()}' given twice in one object (JSON readers differ on which one counts)");
                        break;
                }
            }
            while (reader.Read());
        }
        catch (JsonException e)
        {
            throw Malformed(e);
        }
        if (twice is not null)
            throw twice;
        return parts;
    }

    /// <param name="parts">The request's parts: the tensor's are those of its first input.</param>
    /// <param name="headed">Whether the request gave its JSON header's length (then <paramref name="binary"/> holds the bytes after it).</param>
    private static float[] ReadTensor(ReadOnlySpan<byte> json, ref InferParts parts, int maxRows, bool headed, ReadOnlySpan<byte> binary)
    {
        if (parts.FirstInput.TokenType != JsonTokenType.StartObject)
            throw new InputException($"{Source}: inputs[0] must be a tensor object, got {Kind(parts.FirstInput.TokenType)}");
        string name = parts.Has(Part.Name) && parts.Name.TokenType == JsonTokenType.String ? parts.Name.GetString()! : "";
        string datatype = parts.Has(Part.Datatype) && parts.Datatype.TokenType == JsonTokenType.String ? parts.Datatype.GetString()! : "";
        bool hasShape = parts.Has(Part.Shape);
        var shape = parts.Shape;
        long rows = InputRows(name, datatype, hasShape && shape.TokenType == JsonTokenType.StartArray ? Dimensions(shape) : null,
            hasShape ? Raw(json, shape) : "none", maxRows);
        Utf8JsonReader size = default;
        bool binaryInput = parts.Has(Part.InputParameters) && parts.InputParameters.TokenType == JsonTokenType.StartObject
            && TryProperty(parts.InputParameters, "binary_data_size"u8, out size);
        if (binaryInput && !headed)
            throw new InputException($"{Source}: input '{InputName}' has binary_data_size, but the request has no {HeaderLengthName} header to " +
                $"say where its bytes begin");
        if (!binaryInput && binary.Length > 0)
            throw new InputException($"{Source}: {binary.Length} bytes follow the JSON header, but no input has binary_data_size");
        bool hasData = parts.Has(Part.Data);
        var values = parts.Data;
        if (binaryInput)
            return ReadBinary(json, size, hasData, rows, binary);
        if (!hasData || values.TokenType != JsonTokenType.StartArray)
            throw new InputException($"{InputPlace}: the tensor needs \"data\", an array of {rows} x {SongData.FeatureCount} numbers");
        // Counted before anything is allocated: a short request must not reserve what its shape claims.
        long needed = RequireValues("data", parts.DataValues, rows);
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
    /// The values of an array (the reader at its start), flat or nested as the protocol allows, row-major, read
    /// into <paramref name="features"/> (counted before, by <see cref="Scan"/>), each checked as every reader checks one.
    /// </summary>
    private static void Values(ReadOnlySpan<byte> json, Utf8JsonReader array, float[] features, string where)
    {
        int feature = 0;
        for (long count = 0, depth = 1; depth > 0 && array.Read();)
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
            features[count] = array.TokenType == JsonTokenType.Number && array.TryGetDouble(out double number) && Plain(number, feature) ? (float)number
                : Feature($"{where}: song {count / SongData.FeatureCount + 1}", SongData.FeatureNames[feature], feature,
                    array.TokenType == JsonTokenType.Number, Raw(json, array));
            array.Skip(); // an object is one value, as a number is
            count++;
            feature = feature == SongData.FeatureCount - 1 ? 0 : feature + 1;
        }
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
}
