// ONNX export: the whole model as one ONNX graph that takes the 15 raw features (N, 15), in SongData's order,
// and returns P(hit) (N): the feature encoding (log1p, one-hot), the input transform (quantile scores with the
// inverse normal CDF, or the piecewise-linear bins), the standardisation, every ensemble member's dense layers
// and the averaging of their probabilities. Each step mirrors the C# code it stands for (Preprocessing,
// FeatureEncoding, the dense layers); the quantile step computes in double, as the C# does. The protobuf
// messages come from onnx-subset.proto through Google.Protobuf (generated at build time by Grpc.Tools).
using Google.Protobuf;
using HitGpu.Kernels;
using HitGpu.Nn.Onnx.Proto;

namespace HitGpu.Nn.Onnx;

public static class OnnxExport
{
    /// <summary>The ONNX operator set the graph uses (ONNX Runtime 1.14 and later read it).</summary>
    public const int Opset = 17;

    public const string InputName = "features", OutputName = "probability";

    /// <summary>Writes the model as an ONNX file, atomically.</summary>
    public static void Save(HitModel model, string path) => AtomicFile.Write(path, stream => ToModel(model).WriteTo(stream));

    /// <summary>The model as ONNX bytes.</summary>
    public static byte[] ToBytes(HitModel model) => ToModel(model).ToByteArray();

    private static ModelProto ToModel(HitModel model)
    {
        var graph = new GraphBuilder();
        string x = graph.Input(InputName, SongData.FeatureCount);
        x = Encode(graph, model.Preprocessing.Encoding, x);
        var preprocessing = model.Preprocessing;
        if (preprocessing.Transform.Scaling == InputScaling.Quantile)
            x = QuantileScores(graph, x, preprocessing.Knots!);
        else if (preprocessing.Transform.Scaling == InputScaling.Piecewise)
            x = PiecewiseBins(graph, x, preprocessing.Knots!, preprocessing.Transform.Bins);
        else if (preprocessing.Transform.Scaling == InputScaling.Robust)
        {
            var scales = preprocessing.Knots!.Select(Preprocessing.RobustScale).ToArray();
            string v = graph.Op("Div", graph.Op("Sub", x, graph.Floats("medians", scales.Select(s => s.Median).ToArray(), 1, scales.Length)),
                graph.Floats("spreads", scales.Select(s => s.Spread).ToArray(), 1, scales.Length));
            string third = graph.Op("Div", v, graph.Floats("three", [3f]));
            x = graph.Op("Div", v, graph.Op("Sqrt", graph.Op("Add", graph.Floats("one", [1f]), graph.Op("Mul", third, third))));
        }
        else if (preprocessing.Transform.Scaling == InputScaling.Embedding)
        {
            // Per feature its score, then its bins: (N, W, 1) beside (N, W, B), flattened.
            int width = preprocessing.Knots!.Length, bins = preprocessing.Transform.Bins;
            string scores = graph.Op("Reshape", QuantileScores(graph, x, preprocessing.Knots), graph.Longs("scores_3d", [0, width, 1], 3));
            string binned = graph.Op("Reshape", PiecewiseBins(graph, x, preprocessing.Knots, bins), graph.Longs("bins_3d", [0, width, bins], 3));
            x = graph.Op("Reshape", graph.Op("Concat", [scores, binned], attributes: [Int("axis", 2)]),
                graph.Longs("embedding_inputs", [0, width * (1 + bins)], 2));
        }
        x = graph.Op("Div", graph.Op("Sub", x, graph.Floats("means", preprocessing.Means, 1, preprocessing.Means.Length)),
            graph.Floats("deviations", preprocessing.Deviations, 1, preprocessing.Deviations.Length));

        // Each member as a plain network (its adapters folded into its weights): dense layers, then the sigmoid
        // of the logit; the members' probabilities averaged in double.
        var layout = model.Layout.Plain;
        var members = model.Networks.SelectMany(p => Enumerable.Range(0, model.Layout.Members).Select(i => model.Layout.MemberAsPlain(p, i))).ToArray();
        string? sum = null;
        for (int m = 0; m < members.Length; m++)
        {
            string h = x;
            for (int l = 0; l < layout.Layers; l++)
            {
                int nIn = layout.Inputs(l), nOut = layout.Outputs(l);
                var transposed = new float[nIn * nOut]; // W is (out, in); MatMul takes (in, out)
                for (int o = 0; o < nOut; o++)
                    for (int i = 0; i < nIn; i++)
                        transposed[i * nOut + o] = members[m][layout.WeightOffset(l) + o * nIn + i];
                h = graph.Op("Add", graph.Op("MatMul", h, graph.Floats($"member{m}.layer{l}.weight_t", transposed, nIn, nOut)),
                    graph.Floats($"member{m}.layer{l}.bias", members[m].AsSpan(layout.BiasOffset(l), nOut).ToArray(), nOut));
                h = layout.ActivationOf(l) switch
                {
                    Activation.Relu => graph.Op("Relu", h),
                    Activation.Sigmoid => graph.Op("Sigmoid", h),
                    Activation.Cos => graph.Op("Cos", h),
                    _ => h,
                };
            }
            string p = graph.Cast(graph.Op("Sigmoid", h), Proto.TensorProto.Types.DataType.Double);
            sum = sum is null ? p : graph.Op("Add", sum, p);
        }
        string mean = graph.Op("Div", sum!, graph.Doubles("members", [members.Length], 1));
        graph.Op("Reshape", graph.Cast(mean, Proto.TensorProto.Types.DataType.Float), graph.Longs("flat", [-1], 1), name: OutputName);
        graph.Output(OutputName);

        var result = new ModelProto
        {
            IrVersion = 8,
            ProducerName = "HitGpu",
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "",
            DocString = $"P(hit) of songs from their 15 Spotify audio features ({string.Join(", ", SongData.FeatureNames)}), " +
                $"as HitGpu's model predicts it: the mean of {members.Length} network(s) of widths {string.Join("-", model.Layout.Widths)}",
            Graph = graph.Build("hitgpu"),
        };
        result.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        return result;
    }

    /// <summary>FeatureEncoding in ONNX: the kept features (log1p where asked), then the one-hot columns.</summary>
    private static string Encode(GraphBuilder graph, FeatureEncoding encoding, string x)
    {
        if (encoding.LogFeatures.Count == 0 && encoding.OneHotFeatures.Count == 0)
            return x;
        var kept = Enumerable.Range(0, SongData.FeatureCount).Where(c => !encoding.OneHotFeatures.Contains(SongData.FeatureNames[c])).ToArray();
        string columns = graph.Op("Gather", x, graph.Longs("kept", kept.Select(c => (long)c).ToArray(), kept.Length), attributes: [Int("axis", 1)]);
        if (encoding.LogFeatures.Count > 0)
        {
            // log(1 + max(0, v)) on every kept column, taken where the column is a logged one.
            var logged = kept.Select(c => encoding.LogFeatures.Contains(SongData.FeatureNames[c]) ? 1f : 0f).ToArray();
            string log = graph.Op("Log", graph.Op("Add", graph.Op("Max", columns, graph.Floats("zero", [0f])), graph.Floats("one", [1f])));
            string mask = graph.Op("Cast", graph.Floats("logged", logged, 1, logged.Length),
                attributes: [Int("to", (long)Proto.TensorProto.Types.DataType.Bool)]);
            columns = graph.Op("Where", mask, log, columns);
        }
        var parts = new List<string> { columns };
        foreach (var feature in encoding.OneHotFeatures)
        {
            int c = Array.IndexOf(SongData.FeatureNames, feature);
            var values = FeatureEncoding.Categories(feature);
            string column = graph.Op("Gather", x, graph.Longs($"{feature}.column", [c], 1), attributes: [Int("axis", 1)]);
            string equal = graph.Op("Equal", column, graph.Floats($"{feature}.categories", values.Select(v => (float)v).ToArray(), 1, values.Length));
            parts.Add(graph.Cast(equal, Proto.TensorProto.Types.DataType.Float));
        }
        return parts.Count == 1 ? parts[0] : graph.Op("Concat", [.. parts], attributes: [Int("axis", 1)]);
    }

    /// <summary>
    /// Preprocessing.QuantileScores in ONNX, in double: each value's position among its feature's knots (ties
    /// take the middle of their run, values between knots are interpolated), then the normal score of
    /// (position + 0.5) / knots by Acklam's rational approximation, as Preprocessing.NormalQuantile.
    /// </summary>
    private static string QuantileScores(GraphBuilder graph, string x, float[][] knots)
    {
        int width = knots.Length, count = knots[0].Length;
        var flat = knots.SelectMany(k => k.Select(v => (double)v)).ToArray();
        string v = graph.Cast(x, Proto.TensorProto.Types.DataType.Double);                       // (N, W)
        string vColumn = graph.Op("Unsqueeze", v, graph.Longs("axis2", [2], 1));                 // (N, W, 1)
        string all = graph.Doubles("knots", flat, 1, width, count);                               // (1, W, K)
        string sumAxis = graph.Longs("sum_axis", [2], 1);
        string Count(string comparison) =>
            graph.Op("ReduceSum", graph.Cast(comparison, Proto.TensorProto.Types.DataType.Double), sumAxis, attributes: [Int("keepdims", 0)]);
        string lo = Count(graph.Op("Less", all, vColumn));          // knots below v: C#'s LowerBound
        string hi = Count(graph.Op("LessOrEqual", all, vColumn));   // knots at or below v: UpperBound
        string half = graph.Doubles("half", [0.5]), one = graph.Doubles("one_d", [1.0]);
        string tie = graph.Op("Mul", graph.Op("Sub", graph.Op("Add", lo, hi), one), half);     // (lo + hi - 1) / 2

        // Between knots lo - 1 and lo: gather them per feature (indices clipped to be valid where unused).
        string index = graph.Cast(graph.Op("Clip", lo, one, graph.Doubles("last", [count - 1.0])), Proto.TensorProto.Types.DataType.Int64);
        string byFeature = graph.Op("Transpose", index, attributes: [Ints("perm", [1, 0])]);      // (W, N)
        string table = graph.Doubles("knots_table", flat, width, count);                           // (W, K)
        string below = graph.Op("Transpose", graph.Op("GatherElements", table, graph.Op("Sub", byFeature, graph.Longs("one_l", [1])),
            attributes: [Int("axis", 1)]), attributes: [Ints("perm", [1, 0])]);
        string above = graph.Op("Transpose", graph.Op("GatherElements", table, byFeature, attributes: [Int("axis", 1)]), attributes: [Ints("perm", [1, 0])]);
        string between = graph.Op("Add", graph.Op("Sub", lo, one), graph.Op("Div", graph.Op("Sub", v, below), graph.Op("Sub", above, below)));

        string first = graph.Doubles("first_knots", knots.Select(k => (double)k[0]).ToArray(), 1, width);
        string lastKnots = graph.Doubles("last_knots", knots.Select(k => (double)k[^1]).ToArray(), 1, width);
        string position = graph.Op("Where", graph.Op("Greater", hi, lo), tie, between);
        position = graph.Op("Where", graph.Op("GreaterOrEqual", v, lastKnots), graph.Doubles("top", [count - 1.0]), position);
        position = graph.Op("Where", graph.Op("LessOrEqual", v, first), graph.Doubles("bottom", [0.0]), position);
        string u = graph.Op("Div", graph.Op("Add", position, half), graph.Doubles("knot_count", [count]));
        return graph.Cast(NormalQuantile(graph, u), Proto.TensorProto.Types.DataType.Float);
    }

    /// <summary>Preprocessing.NormalQuantile (Acklam) on a double tensor: the central and the two tail formulas, chosen by p.</summary>
    private static string NormalQuantile(GraphBuilder graph, string p)
    {
        double[] a = Preprocessing.AcklamA, b = Preprocessing.AcklamB, c = Preprocessing.AcklamC, d = Preprocessing.AcklamD;
        string D(double value) => graph.Doubles($"k{graph.Next()}", [value]);
        string Horner(string t, double[] coefficients, bool monicTail)
        {
            // ((c0 t + c1) t + ...) t + c_last, and with monicTail one more "* t + 1", as the C# writes them.
            string acc = graph.Op("Add", graph.Op("Mul", D(coefficients[0]), t), D(coefficients[1]));
            for (int k = 2; k < coefficients.Length; k++)
                acc = graph.Op("Add", graph.Op("Mul", acc, t), D(coefficients[k]));
            return monicTail ? graph.Op("Add", graph.Op("Mul", acc, t), D(1)) : acc;
        }
        string Tail(string q) => graph.Op("Div", Horner(q, c, monicTail: false), Horner(q, d, monicTail: true));
        string lowQ = graph.Op("Sqrt", graph.Op("Mul", D(-2), graph.Op("Log", p)));
        string highQ = graph.Op("Sqrt", graph.Op("Mul", D(-2), graph.Op("Log", graph.Op("Sub", D(1), p))));
        string r = graph.Op("Sub", p, D(0.5)), s = graph.Op("Mul", r, r);
        string central = graph.Op("Div", graph.Op("Mul", Horner(s, a, monicTail: false), r), Horner(s, b, monicTail: true));
        string result = graph.Op("Where", graph.Op("Greater", p, D(1 - Preprocessing.AcklamLow)), graph.Op("Neg", Tail(highQ)), central);
        return graph.Op("Where", graph.Op("Less", p, D(Preprocessing.AcklamLow)), Tail(lowQ), result);
    }

    /// <summary>Preprocessing.Piecewise in ONNX: per feature and bin, the value's place in the bin clipped to [0, 1]; a bin of zero width a step.</summary>
    private static string PiecewiseBins(GraphBuilder graph, string x, float[][] knots, int bins)
    {
        int width = knots.Length;
        var lo = new float[width * bins];
        var hi = new float[width * bins];
        for (int c = 0; c < width; c++)
            for (int b = 0; b < bins; b++)
                (lo[c * bins + b], hi[c * bins + b]) = Preprocessing.BinEdges(knots[c], b, bins);
        string v = graph.Op("Unsqueeze", x, graph.Longs("axis2", [2], 1));                   // (N, W, 1)
        string low = graph.Floats("bin_low", lo, 1, width, bins), high = graph.Floats("bin_high", hi, 1, width, bins);
        string inside = graph.Op("Clip", graph.Op("Div", graph.Op("Sub", v, low), graph.Op("Sub", high, low)), graph.Floats("zero", [0f]),
            graph.Floats("one", [1f]));
        string step = graph.Cast(graph.Op("GreaterOrEqual", v, high), Proto.TensorProto.Types.DataType.Float);
        string binned = graph.Op("Where", graph.Op("Greater", high, low), inside, step);
        return graph.Op("Reshape", binned, graph.Longs("flat_bins", [0, width * bins], 2));
    }

    private static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    private static AttributeProto Ints(string name, long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    /// <summary>Nodes, constants and names of one graph; every value gets a fresh name.</summary>
    private sealed class GraphBuilder
    {
        private readonly GraphProto graph = new();
        private readonly HashSet<string> constants = [];
        private int next;

        public int Next() => next++;

        public string Input(string name, int columns)
        {
            graph.Input.Add(Value(name, Proto.TensorProto.Types.DataType.Float, "N", columns));
            return name;
        }

        /// <summary>Declares the graph's output: the value that the node named <paramref name="name"/> writes.</summary>
        public void Output(string name) => graph.Output.Add(Value(name, Proto.TensorProto.Types.DataType.Float, "N"));

        private static ValueInfoProto Value(string name, Proto.TensorProto.Types.DataType type, string rows, int? columns = null)
        {
            var shape = new TensorShapeProto();
            shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = rows });
            if (columns is int c)
                shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = c });
            return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } } };
        }

        public string Op(string type, string input, AttributeProto[]? attributes = null, string? name = null) => Op(type, [input], attributes, name);

        public string Op(string type, string a, string b, AttributeProto[]? attributes = null, string? name = null) => Op(type, [a, b], attributes, name);

        public string Op(string type, string a, string b, string c, AttributeProto[]? attributes = null) => Op(type, [a, b, c], attributes);

        public string Op(string type, string[] inputs, AttributeProto[]? attributes = null, string? name = null)
        {
            string output = name ?? $"{type.ToLowerInvariant()}_{next++}";
            var node = new NodeProto { OpType = type, Name = $"{type}_{next++}" };
            node.Input.AddRange(inputs);
            node.Output.Add(output);
            if (attributes is not null)
                node.Attribute.AddRange(attributes);
            graph.Node.Add(node);
            return output;
        }

        public string Cast(string value, Proto.TensorProto.Types.DataType to) => Op("Cast", value, attributes: [Int("to", (long)to)]);

        public string Floats(string name, float[] values, params long[] dims) =>
            Constant(name, dims.Length == 0 ? [values.Length] : dims, t => { t.DataType = (int)Proto.TensorProto.Types.DataType.Float;
                t.FloatData.AddRange(values); });

        public string Doubles(string name, double[] values, params long[] dims) =>
            Constant(name, dims.Length == 0 ? [values.Length] : dims, t => { t.DataType = (int)Proto.TensorProto.Types.DataType.Double;
                t.DoubleData.AddRange(values); });

        public string Longs(string name, long[] values, params long[] dims) =>
            Constant(name, dims.Length == 0 ? [values.Length] : dims, t => { t.DataType = (int)Proto.TensorProto.Types.DataType.Int64;
                t.Int64Data.AddRange(values); });

        /// <summary>A constant (an initializer); a name asked for twice is the same constant, made once.</summary>
        private string Constant(string name, long[] dims, Action<Proto.TensorProto> fill)
        {
            if (!constants.Add(name))
                return name;
            var tensor = new Proto.TensorProto { Name = name };
            tensor.Dims.AddRange(dims);
            fill(tensor);
            graph.Initializer.Add(tensor);
            return name;
        }

        public GraphProto Build(string name)
        {
            graph.Name = name;
            return graph;
        }
    }
}
