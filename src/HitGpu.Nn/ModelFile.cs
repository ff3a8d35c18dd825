// The model file: safetensors (8-byte little-endian header length, JSON header, raw little-endian float32
// tensors), so other tools can read the weights, with everything else HitGpu needs to predict in the
// header's __metadata__ as JSON: widths and activations, feature names, the preprocessing, provenance, and
// a SHA-256 over that JSON and the tensor bytes, so a truncated or edited file is refused.
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using HitGpu.Kernels;

namespace HitGpu.Nn;

/// <summary>Where a model came from: the data files and the settings and results of its training.</summary>
public sealed record ModelProvenance(
    IReadOnlyList<DataFile> Data, int Seed, int Epochs, int BatchSize, float LearningRate,
    double TrainLoss, double TrainAccuracy, double ValidationLoss, double ValidationAccuracy, double TestAccuracy);

/// <summary>
/// A trained hit predictor: its preprocessing (fitted on its training part), architecture, and its
/// networks' parameter arrays, laid out as <see cref="ParameterLayout"/> says. Training makes one network
/// (its ensemble members inside it); files of format 1 may hold several plain networks, one per member of
/// an ensemble trained one after another. Either way P(hit) is the mean over networks and members.
/// </summary>
public sealed record HitModel(ParameterLayout Layout, Preprocessing Preprocessing, IReadOnlyList<float[]> Networks, ModelProvenance? Provenance)
{
    /// <summary>P(hit) for every song: the members' probabilities averaged, each computed by the device kernels.</summary>
    public float[] PredictProbabilities(ComputeDevice device, SongTable songs)
    {
        using var predictor = new Predictor(device, this);
        return predictor.Predict(songs);
    }

    /// <summary>
    /// Scores chunks of songs as they come (e.g. <see cref="SongData.ReadChunks"/>), in order, with one
    /// <see cref="Predictor"/>: memory holds one chunk, whatever the number of songs.
    /// </summary>
    public IEnumerable<(SongTable Songs, float[] Probabilities)> PredictChunks(ComputeDevice device, IEnumerable<SongTable> chunks,
        CancellationToken cancellationToken = default)
    {
        using var predictor = new Predictor(device, this);
        foreach (var chunk in chunks)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return (chunk, predictor.Predict(chunk));
        }
    }

    /// <summary>Accuracy, precision, recall, ROC AUC, log loss and the confusion matrix of the model on labelled songs.</summary>
    public Evaluation Evaluate(ComputeDevice device, SongTable songs) =>
        Evaluation.Of(PredictProbabilities(device, songs), songs.Labels ?? throw new InputException($"{songs.Source}: evaluation needs a target column"));
}

public static class ModelFile
{
    /// <summary>Plain networks (one member, no adapters), as every HitGpu version writes them.</summary>
    public const string Format = "hitgpu-model/1";

    /// <summary>Networks with k members (an ensemble kind, shared tensors and per-member adapters): versions that train ensembles in one network.</summary>
    public const string EnsembleFormat = "hitgpu-model/2";
    private const long MaxHeaderBytes = 64 << 20;

    public static void Save(HitModel model, string path) => AtomicFile.Write(path, stream =>
    {
        var (header, tensors) = Encode(model);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        stream.Write(tensors);
    });

    private static (byte[] header, byte[] tensors) Encode(HitModel model)
    {
        var layout = model.Layout;
        // A plain network on a transform format 1 knows keeps format 1, which older versions read; members,
        // embeddings and the named transforms need format 2 (an older version would misread them).
        string format = layout.IsPlain && NamedTransform(model.Preprocessing.Transform) is null ? Format : EnsembleFormat;
        var tensors = new byte[(long)model.Networks.Count * layout.Count * sizeof(float)];
        var header = new JsonObject();
        long offset = 0;
        for (int m = 0; m < model.Networks.Count; m++)
        {
            var parameters = model.Networks[m];
            if (parameters.Length != layout.Count)
                throw new ArgumentException($"network {m} has {parameters.Length} parameters, the layout {layout.Count}");
            for (int l = 0; l < layout.Layers; l++)
                foreach (var t in layout.Tensors(l))
                    offset = AddTensor(header, tensors, offset, TensorName(format, m, l, t.Name), t.Shape, parameters.AsSpan(t.Offset, t.Length));
        }
        string metadata = JsonSerializer.Serialize(new Metadata
        {
            Widths = layout.Widths.ToArray(),
            Activations = Enumerable.Range(0, layout.Layers).Select(l => layout.ActivationOf(l).ToString().ToLowerInvariant()).ToArray(),
            Output = "sigmoid",
            Features = SongData.FeatureNames,
            LogFeatures = model.Preprocessing.Encoding.LogFeatures.ToArray(),
            OneHotFeatures = model.Preprocessing.Encoding.OneHotFeatures.ToArray(),
            Inputs = model.Preprocessing.Encoding.Columns.ToArray(),
            QuantileKnots = model.Preprocessing.Knots,
            PiecewiseBins = model.Preprocessing.Transform.Bins,
            Means = model.Preprocessing.Means,
            Deviations = model.Preprocessing.Deviations,
            FeatureMin = model.Preprocessing.Statistics?.Min,
            FeatureMedian = model.Preprocessing.Statistics?.Median,
            FeatureMax = model.Preprocessing.Statistics?.Max,
            Members = model.Networks.Count,
            EnsembleKind = format == Format ? null : layout.Kind.ToString().ToLowerInvariant(),
            EnsembleMembers = format == Format ? 0 : layout.Members,
            Groups = layout.Groups.All(g => g == 1) ? null : layout.Groups.ToArray(),
            InputTransform = NamedTransform(model.Preprocessing.Transform),
            Training = model.Provenance,
        }, JsonOptions);
        header["__metadata__"] = new JsonObject
        {
            ["format"] = format,
            ["hitgpu"] = metadata,
            ["sha256"] = Checksum(metadata, tensors),
        };
        var bytes = Encoding.UTF8.GetBytes(header.ToJsonString());
        // Pad the header with spaces so the tensors start 8-byte aligned, as the format recommends.
        int padded = (bytes.Length + 7) / 8 * 8;
        var aligned = Enumerable.Repeat((byte)' ', padded).ToArray();
        bytes.CopyTo(aligned, 0);
        return (aligned, tensors);
    }

    private static long AddTensor(JsonObject header, byte[] tensors, long offset, string name, int[] shape, ReadOnlySpan<float> values)
    {
        long end = offset + values.Length * sizeof(float);
        for (int i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteSingleLittleEndian(tensors.AsSpan((int)offset + i * sizeof(float)), values[i]);
        header[name] = new JsonObject
        {
            ["dtype"] = "F32",
            ["shape"] = new JsonArray(shape.Select(s => (JsonNode)s).ToArray()),
            ["data_offsets"] = new JsonArray(offset, end),
        };
        return end;
    }

    public static HitModel Load(string path)
    {
        if (Directory.Exists(path))
            throw new InputException($"{path}: is a folder, not a model file (a .hitgpu file that ModelFile.Save wrote)");
        if (FileSystem.Stat(path) is { Kind: not FileSystem.Kind.Regular } special)
            throw new InputException($"{path}: is a {special.Kind.ToString().ToLowerInvariant()}, not a model file");
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            throw new InputException($"{path}: model file not found");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InputException($"{path}: cannot read the model file ({e.Message})");
        }
        return Decode(bytes, path);
    }

    public static HitModel Decode(byte[] bytes, string path)
    {
        InputException Bad(string what) => new($"{path}: not a valid HitGpu model: {what}");
        try
        {
            return Interpret(bytes, Bad);
        }
        // The header is untrusted JSON: a value of another type than expected (an object where a number
        // belongs, text that is not UTF-8, a number out of range) surfaces as one of these, each meaning that
        // the file is not a valid model.
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException or JsonException or ArgumentException or
            KeyNotFoundException)
        {
            throw Bad(e.Message);
        }
    }

    /// <summary>What a file that is not a model file looks like, when it looks like something: said instead of a header error.</summary>
    private static string? LooksLike(byte[] bytes)
    {
        if (bytes.Length == 0)
            return "the file is empty";
        var start = bytes.AsSpan(0, Math.Min(bytes.Length, 4096));
        if (start.Length >= 2 && start[0] == 0x1F && start[1] == 0x8B)
            return "it is gzip-compressed (unpack it first)";
        // ONNX: a protobuf ModelProto starts with field 1, ir_version (tag 0x08); HitGpu's export names itself next.
        if (start[0] == 0x08 && (start.IndexOf("HitGpu"u8) >= 0 || start.IndexOf("onnx"u8) >= 0 || start.IndexOf("pytorch"u8) >= 0))
            return "it looks like an ONNX model (OnnxExport.Save writes those for other runtimes; ModelFile.Load reads HitGpu's own .hitgpu files)";
        int line = start.IndexOf((byte)'\n');
        var first = line >= 0 ? start[..line] : start;
        if (first.IndexOf("danceability"u8) >= 0 || (first.IndexOf((byte)',') >= 0 && !first.Contains((byte)0)))
            return "it looks like a CSV file (songs go to SongData.Load; ModelFile.Load takes a .hitgpu file)";
        return null;
    }

    private static HitModel Interpret(byte[] bytes, Func<string, InputException> Bad)
    {
        if (bytes.Length >= 8 && BinaryPrimitives.ReadUInt64LittleEndian(bytes) is var length && length <= MaxHeaderBytes && (long)length <= bytes.Length - 8
            && length > 0 && bytes[8] == (byte)'{')
            return Read(bytes, Bad);
        if (LooksLike(bytes) is { } looks)
            throw Bad(looks);
        return Read(bytes, Bad);
    }

    private static HitModel Read(byte[] bytes, Func<string, InputException> Bad)
    {
        if (bytes.Length < 8)
            throw Bad($"file is {bytes.Length} bytes, too short for a safetensors header (truncated?)");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > MaxHeaderBytes || (long)headerLength > bytes.Length - 8)
            throw Bad($"header length {headerLength} does not fit in a file of {bytes.Length} bytes (truncated?)");
        JsonObject header;
        try
        {
            header = JsonNode.Parse(bytes.AsSpan(8, (int)headerLength))?.AsObject() ?? throw Bad("empty header");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw Bad($"header is not valid JSON ({e.Message})");
        }
        var tensors = bytes.AsSpan(8 + (int)headerLength);
        if (header["__metadata__"] is not JsonObject meta || Text(meta["format"]) is not (Format or EnsembleFormat))
            throw Bad($"no '{Format}' or '{EnsembleFormat}' metadata (a safetensors file from another tool, or a newer HitGpu?)");
        string format = Text(meta["format"])!;
        string metadataJson = Text(meta["hitgpu"]) ?? throw Bad("metadata 'hitgpu' missing");
        if (Text(meta["sha256"]) != Checksum(metadataJson, tensors))
            throw Bad("checksum mismatch: the file was truncated or edited");
        Metadata metadata;
        try
        {
            metadata = JsonSerializer.Deserialize<Metadata>(metadataJson, JsonOptions) ?? throw Bad("metadata is empty");
        }
        catch (JsonException e)
        {
            throw Bad($"metadata is not valid ({e.Message})");
        }
        if (metadata.Features is null || !metadata.Features.SequenceEqual(SongData.FeatureNames))
            throw Bad("feature list differs from this version's 15 features");
        FeatureEncoding encoding;
        try
        {
            encoding = new FeatureEncoding(metadata.LogFeatures ?? [], metadata.OneHotFeatures ?? []);
        }
        catch (ArgumentException e)
        {
            throw Bad($"feature encoding: {e.Message}");
        }
        // Format 1 does not name the transform: piecewise bins above 0 say piecewise, knots alone quantile. An
        // embedding's inputs (format 2) are named.
        var transform = metadata.InputTransform switch
        {
            null => metadata.PiecewiseBins != 0 ? InputTransform.Piecewise(metadata.PiecewiseBins)
                : metadata.QuantileKnots is not null ? InputTransform.Quantile : InputTransform.Standard,
            "embedding" when format == EnsembleFormat => InputTransform.Embedding(metadata.PiecewiseBins),
            "robust" when format == EnsembleFormat => InputTransform.Robust,
            _ => throw Bad($"unknown input transform '{metadata.InputTransform}'"),
        };
        Preprocessing preprocessing;
        try
        {
            // Kept only whole: a file without some of them (written before they were all kept) predicts as before,
            // without counting songs far outside the training range.
            var statistics = metadata.FeatureMin is null || metadata.FeatureMedian is null || metadata.FeatureMax is null ? null
                : new FeatureStatistics(metadata.FeatureMin, metadata.FeatureMedian, metadata.FeatureMax);
            preprocessing = new Preprocessing(encoding, transform, metadata.QuantileKnots, metadata.Means ?? [], metadata.Deviations ?? [], statistics);
        }
        catch (ArgumentException e)
        {
            throw Bad($"preprocessing: {e.Message}");
        }
        int inputs = preprocessing.NetworkInputs;
        if (metadata.Widths is not { Length: >= 2 } widths || widths[0] != inputs || widths[^1] != 1)
            throw Bad($"widths must run from {inputs} inputs (the encoded features) to 1 output");
        var layout = ReadLayout(format, metadata, widths, Bad);
        if (metadata.Members < 1)
            throw Bad("no network");
        if ((long)layout.Count * sizeof(float) * metadata.Members > tensors.Length)
            throw Bad($"{metadata.Members} networks of a {string.Join("-", widths)} layout need more than the file's {tensors.Length} tensor bytes");
        var networks = new List<float[]>();
        for (int m = 0; m < metadata.Members; m++)
        {
            var parameters = new float[layout.Count];
            for (int l = 0; l < layout.Layers; l++)
                foreach (var t in layout.Tensors(l))
                    ReadTensor(header, tensors, TensorName(format, m, l, t.Name), t.Shape, parameters.AsSpan(t.Offset, t.Length), Bad);
            networks.Add(parameters);
        }
        return new HitModel(layout, preprocessing, networks, metadata.Training);
    }

    /// <summary>The transforms that format 2 stores by name (format 1 tells the others apart by their fields).</summary>
    private static string? NamedTransform(InputTransform transform) => transform.Scaling switch
    {
        InputScaling.Embedding => "embedding",
        InputScaling.Robust => "robust",
        _ => null,
    };

    /// <summary>Format 1 names its tensors member{m}.layer{l}.weight (one plain network per member); format 2 network{m}.layer{l}.weight, .input_scale,
    /// ...</summary>
    private static string TensorName(string format, int network, int layer, string tensor) =>
        $"{(format == Format ? "member" : "network")}{network}.layer{layer}.{tensor}";

    /// <summary>The widths and activations, and in format 2 the ensemble's kind and members (format 1: plain).</summary>
    private static ParameterLayout ReadLayout(string format, Metadata metadata, int[] widths, Func<string, InputException> bad)
    {
        var activations = ReadActivations(metadata, widths.Length - 1, bad);
        if (format == Format)
            return metadata.Groups is null ? new ParameterLayout(widths, activations) : throw bad("grouped layers need format 2");
        if (!Enum.TryParse<EnsembleKind>(metadata.EnsembleKind, ignoreCase: true, out var kind) || !Enum.IsDefined(kind)
            || int.TryParse(metadata.EnsembleKind, out _))
            throw bad($"unknown ensemble kind '{metadata.EnsembleKind}' (expected " +
                $"{string.Join(", ", Enum.GetNames<EnsembleKind>().Select(n => n.ToLowerInvariant()))})");
        if (metadata.EnsembleMembers < 1 || metadata.EnsembleMembers > ParameterLayout.MaxMembers)
            throw bad($"ensemble members must be 1 to {ParameterLayout.MaxMembers}, got {metadata.EnsembleMembers}");
        return new ParameterLayout(widths, activations, kind, metadata.EnsembleMembers, metadata.Groups);
    }

    /// <summary>One known activation per layer, the last none: the network ends in a logit, and the output is its sigmoid.</summary>
    private static Activation[] ReadActivations(Metadata metadata, int layers, Func<string, InputException> bad)
    {
        if (metadata.Activations is not { } names || names.Length != layers)
            throw bad($"activations must name one activation per layer ({layers})");
        var activations = names.Select(name => Enum.TryParse<Activation>(name, ignoreCase: true, out var a) && Enum.IsDefined(a) && !int.TryParse(name, out _)
            ? a : throw
                bad($"unknown activation '{name}' (expected {string.Join(", ", Enum.GetNames<Activation>().Select(n => n.ToLowerInvariant()))})")).ToArray();
        if (activations[^1] != Activation.Identity || metadata.Output != "sigmoid")
            throw bad("the last layer must be a logit ('identity') with a 'sigmoid' output");
        return activations;
    }

    private static void ReadTensor(JsonObject header, ReadOnlySpan<byte> tensors, string name, int[] shape, Span<float> into, Func<string, InputException> bad)
    {
        if (header[name] is not JsonObject tensor)
            throw bad($"tensor '{name}' missing (a network of another shape?)");
        string dtype = Text(tensor["dtype"]) ?? "no dtype";
        if (dtype != "F32")
            throw bad($"tensor '{name}' is {dtype}, expected F32");
        var actualShape = Numbers(tensor["shape"]);
        if (actualShape is null || !actualShape.SequenceEqual(shape.Select(d => (long)d)))
            throw bad($"tensor '{name}' has shape [{string.Join(",", actualShape ?? [])}], expected [{string.Join(",", shape)}]");
        var offsets = Numbers(tensor["data_offsets"]);
        if (offsets is not { Length: 2 } || offsets[0] < 0 || offsets[1] > tensors.Length || offsets[1] - offsets[0] != (long)into.Length * sizeof(float))
            throw bad($"tensor '{name}' has data offsets [{string.Join(",", offsets ?? [])}] outside the {tensors.Length} data bytes");
        for (int i = 0; i < into.Length; i++)
        {
            into[i] = BinaryPrimitives.ReadSingleLittleEndian(tensors[((int)offsets[0] + i * sizeof(float))..]);
            if (!float.IsFinite(into[i]))
                throw bad($"tensor '{name}' holds a value that is not finite");
        }
    }

    /// <summary>A JSON string's text; null for anything else.</summary>
    private static string? Text(JsonNode? node) => node is JsonValue v && v.TryGetValue(out string? text) ? text : null;

    /// <summary>A JSON array of whole numbers; null for anything else.</summary>
    private static long[]? Numbers(JsonNode? node)
    {
        if (node is not JsonArray array)
            return null;
        var numbers = new long[array.Count];
        for (int i = 0; i < numbers.Length; i++)
            if (array[i] is not JsonValue v || !v.TryGetValue(out numbers[i]))
                return null;
        return numbers;
    }

    private static string Checksum(string metadata, ReadOnlySpan<byte> tensors)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes(metadata));
        sha.AppendData(tensors);
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // NaN metrics of a run stopped at epoch 0
    };

    private sealed class Metadata
    {
        public int[]? Widths { get; set; }
        public string[]? Activations { get; set; }
        public string? Output { get; set; }
        public string[]? Features { get; set; }
        public string[]? LogFeatures { get; set; }
        public string[]? OneHotFeatures { get; set; }
        public string[]? Inputs { get; set; }
        public float[][]? QuantileKnots { get; set; }
        public int PiecewiseBins { get; set; }
        public float[]? Means { get; set; }
        public float[]? Deviations { get; set; }
        public float[]? FeatureMin { get; set; }
        public float[]? FeatureMedian { get; set; }
        public float[]? FeatureMax { get; set; }
        public int Members { get; set; }              // networks (format 1: one per ensemble member)
        // Format 2 only: a plain network's metadata stays as format 1 wrote it.
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
        public string? EnsembleKind { get; set; }     // independent, batch or mini
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
        public int EnsembleMembers { get; set; }      // members inside each network
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
        public int[]? Groups { get; set; }            // each layer's groups (an embedding's first layer: one per feature)
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
        public string? InputTransform { get; set; }   // "embedding": per feature its score and piecewise columns
        public ModelProvenance? Training { get; set; }
    }
}
