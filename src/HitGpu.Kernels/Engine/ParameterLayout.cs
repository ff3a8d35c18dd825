// The network's shape, written once: each layer's widths, activation, ensemble adapters and place in the one
// flat parameter array that gradients and Adam's moments share. The host code, the references, the model
// file and (through LayerShape, uploaded once) the kernels all read it from here.
//
// A network may hold k members that train in one pass over the same batch (TabM's batched ensembles). Member
// i's layer l computes y = f(((x * r_i) W_i^T) * s_i + b_i), where W and b are either per member or shared,
// and r (input scale) and s (output scale) are per-member vectors a layer may have or not. The ensemble kind
// says which layer has what. One member and no adapters is the plain network y = f(x W^T + b).
//
// A layer may also be grouped: its inputs and outputs cut into G equal groups, output group g reading input
// group g only (W is (Outputs, Inputs / G)). A grouped first layer is a per-feature embedding (rtdl's
// NLinear): each feature's inputs (its scalar, then its piecewise-linear encoding) map to its own d outputs.
namespace HitGpu.Kernels;

/// <summary>How k members share a network (TabM, Gorishniy et al. 2025).</summary>
public enum EnsembleKind
{
    /// <summary>k full networks, each with its own weights and biases: a classic ensemble, trained batched.</summary>
    Independent,
    /// <summary>BatchEnsemble: hidden layers share W, each member has its own r, s and bias; per-member heads.</summary>
    Batch,
    /// <summary>TabM-mini: per-member r on the inputs only, then one shared MLP, then per-member heads.</summary>
    Mini,
}

/// <summary>
/// One layer as a kernel reads it: member i's y = f(((x * r_i) W_i^T) * s_i + b_i). Offsets index the flat
/// parameter array; a stride of 0 means shared by all members; a scale offset of -1 means no such scale.
/// </summary>
public struct LayerShape
{
    public int Inputs, Outputs;
    public int WeightOffset, BiasOffset;           // W_0 (Outputs, Inputs) and b_0 (Outputs)
    public int WeightStride, BiasStride;           // member i's W at WeightOffset + i WeightStride; 0 = shared
    public int InputScaleOffset, OutputScaleOffset; // r (members, Inputs), s (members, Outputs); -1 = none
    public int OutputOffset;                       // into one row-member's activations: this layer's outputs
    public int ScaledInputOffset;                  // there: x * r (when the layer has r)
    public int PreScaleOffset;                     // there: (x * r) W^T before s (when the layer has s)
    public int PreActivationOffset;                // there: z, the pre-activation (a cosine's only: its slope needs it); -1 = none
    public int Activation;                         // an Activation, as int for the kernels
    public int Groups;                             // 1: dense; G: output group g reads input group g only
    public int DropsOutputs;                       // 1: dropout applies to the outputs (hidden MLP layers; not embeddings, not the logit)

    public readonly int InputsPerGroup => Inputs / Groups;
    public readonly int OutputsPerGroup => Outputs / Groups;
    /// <summary>Where output o's inputs start: its group's first input (0 for a dense layer).</summary>
    public readonly int FirstInput(int o) => o / OutputsPerGroup * InputsPerGroup;

    public readonly bool HasInputScale => InputScaleOffset >= 0;
    public readonly bool HasOutputScale => OutputScaleOffset >= 0;
    public readonly bool KeepsPreActivation => PreActivationOffset >= 0;
    public readonly int Weight(int member) => WeightOffset + member * WeightStride;
    public readonly int Bias(int member) => BiasOffset + member * BiasStride;
    public readonly int InputScale(int member) => InputScaleOffset + member * Inputs;
    public readonly int OutputScale(int member) => OutputScaleOffset + member * Outputs;
}

/// <summary>
/// Widths (inputs, hidden..., outputs), one activation per layer, the ensemble (kind and members), and where
/// each layer's tensors sit in the flat parameter array: per layer W, b, then r and s when it has them.
/// </summary>
public sealed class ParameterLayout
{
    private readonly LayerShape[] layers;

    public IReadOnlyList<int> Widths { get; }
    public IReadOnlyList<Activation> Activations { get; }
    public int Layers => layers.Length;

    /// <summary>Members trained together in one pass (1: a plain network).</summary>
    public int Members { get; }

    /// <summary>How the members share the layers (always <see cref="EnsembleKind.Independent"/> for one member).</summary>
    public EnsembleKind Kind { get; }

    /// <summary>One member, no adapters, no grouped layer, no cosine: y = f(x W^T + b) per layer, the layout of files before format 2.</summary>
    public bool IsPlain => Members == 1 && layers.All(l => l.Groups == 1 && !l.KeepsPreActivation);

    /// <summary>A plain layer y = f(x W^T + b) alone: W (out, in) at 0 then b (out) in its flat array (tests and benchmarks of one layer).</summary>
    public static LayerShape PlainLayer(int inputs, int outputs, Activation activation) => new ParameterLayout([inputs, outputs], [activation])[0];

    /// <summary>Each layer's groups (1: dense).</summary>
    public IReadOnlyList<int> Groups => layers.Select(l => l.Groups).ToArray();

    /// <summary>Parameters in all: the length of the flat array.</summary>
    public int Count { get; }

    /// <summary>One row-member's activations: each layer's outputs (and scaled inputs and pre-scale sums where it has r and s), end to end.</summary>
    public int ActivationWidth { get; }

    /// <param name="widths">inputs, then each layer's outputs</param>
    /// <param name="activations">one per layer; default ReLU on hidden layers and none on the last (a logit)</param>
    /// <param name="kind">which tensors the members share</param>
    /// <param name="members">members trained together (1: a plain network, whatever the kind)</param>
    /// <param name="groups">each layer's groups (default 1: dense); a grouped layer's widths are multiples of its groups</param>
    public ParameterLayout(IReadOnlyList<int> widths, IReadOnlyList<Activation>? activations = null, EnsembleKind kind = EnsembleKind.Independent,
        int members = 1,
        IReadOnlyList<int>? groups = null)
    {
        if (widths.Count < 2 || widths.Any(w => w < 1))
            throw new ArgumentException($"a network needs at least an input and an output width, all positive; got [{string.Join(",", widths)}]");
        activations ??= Enumerable.Range(0, widths.Count - 1).Select(l => l == widths.Count - 2 ? Activation.Identity : Activation.Relu).ToArray();
        if (activations.Count != widths.Count - 1)
            throw new ArgumentException($"{widths.Count - 1} layers need as many activations, got {activations.Count}");
        if (members < 1 || members > MaxMembers)
            throw new ArgumentException($"an ensemble has 1 to {MaxMembers} members, got {members}");
        if (!Enum.IsDefined(kind))
            throw new ArgumentException($"unknown ensemble kind {kind}");
        groups ??= Enumerable.Repeat(1, widths.Count - 1).ToArray();
        if (groups.Count != widths.Count - 1 || groups.Select((g, l) => g >= 1 && widths[l] % g == 0 && widths[l + 1] % g == 0).Any(ok => !ok))
            throw new ArgumentException($"each of the {widths.Count - 1} layers needs a group count that divides its widths; got [{string.Join(",", groups)}]");
        groupsOf = groups.ToArray();
        Widths = widths.ToArray();
        Activations = activations.ToArray();
        Members = members;
        Kind = members == 1 ? EnsembleKind.Independent : kind;
        layers = new LayerShape[widths.Count - 1];
        try
        {
            (Count, ActivationWidth) = Lay(widths, activations, groups, members);
        }
        catch (OverflowException)
        {
            throw new ArgumentException($"a network of widths {string.Join("-", widths)} with {members} member(s) has more than 2^31 parameters " +
                $"or activations per row: use smaller hidden widths or fewer members");
        }
    }

    /// <summary>Each layer's shape and offsets into <see cref="layers"/>; the parameter count and one row-member's activation width.</summary>
    private (int Count, int ActivationWidth) Lay(IReadOnlyList<int> widths, IReadOnlyList<Activation> activations, IReadOnlyList<int> groups, int members)
    {
        int parameters = 0, activationWidth = 0;
        for (int l = 0; l < layers.Length; l++)
        {
            int nIn = widths[l], nOut = widths[l + 1], perGroupIn = nIn / groups[l];
            var (ownWeights, ownBiases, inputScale, outputScale) = Adapters(l);
            // Checked: widths read from a file may be absurd, and a wrapped count would allocate nonsense.
            int weightOffset = parameters;
            parameters = checked(parameters + (ownWeights ? members : 1) * nOut * perGroupIn);
            int biasOffset = parameters;
            parameters = checked(parameters + (ownBiases ? members : 1) * nOut);
            int inputScaleOffset = -1, outputScaleOffset = -1, scaledInputOffset = -1, preScaleOffset = -1;
            if (inputScale)
            {
                inputScaleOffset = parameters;
                parameters = checked(parameters + members * nIn);
                scaledInputOffset = activationWidth;
                activationWidth = checked(activationWidth + nIn);
            }
            if (outputScale)
            {
                outputScaleOffset = parameters;
                parameters = checked(parameters + members * nOut);
                preScaleOffset = activationWidth;
                activationWidth = checked(activationWidth + nOut);
            }
            int preActivationOffset = -1;
            if (!Kernels.Activations.SlopeFromOutput(activations[l]))
            {
                preActivationOffset = activationWidth;
                activationWidth = checked(activationWidth + nOut);
            }
            var shape = new LayerShape
            {
                Inputs = nIn, Outputs = nOut, Activation = (int)activations[l], Groups = groups[l],
                WeightOffset = weightOffset, BiasOffset = biasOffset,
                WeightStride = ownWeights ? checked(nOut * perGroupIn) : 0, BiasStride = ownBiases ? nOut : 0,
                InputScaleOffset = inputScaleOffset, OutputScaleOffset = outputScaleOffset,
                ScaledInputOffset = scaledInputOffset, PreScaleOffset = preScaleOffset, PreActivationOffset = preActivationOffset,
                    OutputOffset = activationWidth,
                DropsOutputs = l < widths.Count - 2 && groups[l] == 1 ? 1 : 0,
            };
            activationWidth = checked(activationWidth + nOut);
            layers[l] = shape;
        }
        return (parameters, activationWidth);
    }

    /// <summary>Most members a network may have: the CPU epoch keeps k rows of activations per batch row.</summary>
    public const int MaxMembers = 256;

    private readonly int[] groupsOf;

    /// <summary>
    /// Which of layer l's tensors are the members' own, for this kind (nothing with one member). Embedding
    /// (grouped) layers are shared except in independent networks, as in TabM; the MLP's first layer is the
    /// first after them.
    /// </summary>
    private (bool OwnWeights, bool OwnBiases, bool InputScale, bool OutputScale) Adapters(int l)
    {
        if (Members == 1)
            return (false, false, false, false);
        if (Kind == EnsembleKind.Independent)
            return (true, true, false, false);
        if (groupsOf[l] > 1)
            return (false, false, false, false);
        bool head = l == groupsOf.Length - 1, first = l == Array.FindIndex(groupsOf, g => g == 1);
        return Kind == EnsembleKind.Batch
            ? head ? (true, true, false, false) : (false, true, true, true)
            : head ? (true, true, false, false) : (false, false, first, false); // Mini
    }

    /// <summary>inputs -> hidden (ReLU)... -> one logit: the sigmoid is fused with the loss.</summary>
    public static ParameterLayout ForClassifier(int inputs, IReadOnlyList<int> hidden, EnsembleKind kind = EnsembleKind.Independent, int members = 1) =>
        new([inputs, .. hidden, 1], null, kind, members);

    /// <summary>
    /// The classifier behind periodic embeddings (RealMLP's PBLD, TabM's periodic): per feature
    /// cos(2 pi w_j x + b_j) for <paramref name="frequencies"/> learned frequencies, a linear map of them to
    /// <paramref name="dimension"/> outputs and a ReLU, then the hidden layers and one logit.
    /// </summary>
    public static ParameterLayout WithPeriodicEmbedding(int features, int frequencies, int dimension, IReadOnlyList<int> hidden,
        EnsembleKind kind = EnsembleKind.Independent, int members = 1) =>
        new([features, features * frequencies, features * dimension, .. hidden, 1],
            [Activation.Cos, Activation.Relu, .. hidden.Select(_ => Activation.Relu), Activation.Identity], kind, members,
            [features, features, .. Enumerable.Repeat(1, hidden.Count + 1)]);

    /// <summary>
    /// The classifier behind a per-feature embedding: <paramref name="features"/> groups of
    /// <paramref name="inputsPerFeature"/> inputs, each to <paramref name="dimension"/> outputs (no activation:
    /// TabM's piecewise-linear embeddings, version B), then the hidden layers and one logit.
    /// </summary>
    public static ParameterLayout WithEmbedding(int features, int inputsPerFeature, int dimension, IReadOnlyList<int> hidden,
        EnsembleKind kind = EnsembleKind.Independent, int members = 1) =>
        new([features * inputsPerFeature, features * dimension, .. hidden, 1],
            [Activation.Identity, .. hidden.Select(_ => Activation.Relu), Activation.Identity], kind, members,
            [features, .. Enumerable.Repeat(1, hidden.Count + 1)]);

    public LayerShape this[int layer] => layers[layer];

    /// <summary>All layers, in order: what the kernels receive (uploaded once).</summary>
    public LayerShape[] Shapes => (LayerShape[])layers.Clone();

    public int Inputs(int layer) => layers[layer].Inputs;
    public int Outputs(int layer) => layers[layer].Outputs;
    public int WeightOffset(int layer) => layers[layer].WeightOffset;
    public int BiasOffset(int layer) => layers[layer].BiasOffset;
    public Activation ActivationOf(int layer) => Activations[layer];

    /// <summary>The activation that produced layer <paramref name="layer"/>'s input: the previous layer's, none for the features.</summary>
    public Activation InputActivationOf(int layer) => layer > 0 ? Activations[layer - 1] : Activation.Identity;

    /// <summary>The same widths and activations as one plain network: what each member is, once its adapters and groups are folded in.</summary>
    public ParameterLayout Plain => IsPlain ? this : new ParameterLayout(Widths, Activations);

    /// <summary>The seed of member i's own tensors: member 0 takes the network's seed, so a one-member network is unchanged.</summary>
    public static int MemberSeed(int seed, int member) => seed + 7919 * member;

    /// <summary>
    /// Glorot-uniform weights (Keras' default, as in the original study) and zero biases, from a seed: shared
    /// tensors from <paramref name="seed"/>, member i's own from <see cref="MemberSeed"/> (so member i of an
    /// independent ensemble starts where a plain network of that seed does). TabM's adapters: the first
    /// layer's r random signs, every other r and s ones. A grouped (embedding) layer as rtdl's version B:
    /// each group's first input (the feature's scalar) and the bias U(+-1/sqrt(d)), the other inputs (the
    /// piecewise-linear encoding) zero, so the embedding starts as a linear one; a periodic embedding's
    /// cosine layer as RealMLP's: frequencies 2 pi N(0, 0.1^2), phases U(-pi, pi); a grouped layer after it
    /// U(+-1/sqrt(inputs per group)).
    /// </summary>
    public float[] Initialize(int seed)
    {
        var shared = new Random(seed);
        var own = Enumerable.Range(0, Members).Select(i => new Random(MemberSeed(seed, i))).ToArray();
        var parameters = new float[Count];
        for (int l = 0; l < Layers; l++)
        {
            var layer = layers[l];
            int weights = layer.InputsPerGroup * layer.Outputs;
            for (int i = 0; i < (layer.WeightStride > 0 ? Members : 1); i++)
            {
                var rng = layer.WeightStride > 0 ? own[i] : shared;
                if (layer.Groups == 1)
                {
                    double limit = Math.Sqrt(6.0 / (layer.Inputs + layer.Outputs));
                    for (int e = 0; e < weights; e++)
                        parameters[layer.Weight(i) + e] = (float)((rng.NextDouble() * 2 - 1) * limit);
                    continue;
                }
                bool periodic = layer.Activation == (int)Activation.Cos, first = l == 0;
                double scale = first ? 1 / Math.Sqrt(layer.OutputsPerGroup) : 1 / Math.Sqrt(layer.InputsPerGroup);
                for (int e = 0; e < weights; e++)
                {
                    if (periodic)
                        parameters[layer.Weight(i) + e] = (float)(2 * Math.PI * 0.1 * Normal(rng));
                    else if (!first || e % layer.InputsPerGroup == 0) // a piecewise embedding's bins start at zero
                        parameters[layer.Weight(i) + e] = (float)((rng.NextDouble() * 2 - 1) * scale);
                }
                if (layer.BiasStride > 0 || i == 0)
                    for (int o = 0; o < layer.Outputs; o++)
                        parameters[layer.Bias(i) + o] = (float)(periodic ? (rng.NextDouble() * 2 - 1) * Math.PI : (rng.NextDouble() * 2 - 1) * scale);
            }
            for (int i = 0; i < Members; i++)
            {
                if (layer.HasInputScale)
                    for (int j = 0; j < layer.Inputs; j++)
                        parameters[layer.InputScale(i) + j] = l == 0 ? (own[i].Next(2) == 0 ? -1f : 1f) : 1f;
                if (layer.HasOutputScale)
                    for (int o = 0; o < layer.Outputs; o++)
                        parameters[layer.OutputScale(i) + o] = 1f;
            }
        }
        return parameters;
    }

    /// <summary>A standard normal draw (Box-Muller).</summary>
    private static double Normal(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    /// <summary>
    /// Member <paramref name="member"/> as a plain network (<see cref="Plain"/>'s layout): W'[o, j] = s[o] W[o, j] r[j],
    /// the same function up to float rounding. What the ONNX export writes.
    /// </summary>
    public float[] MemberAsPlain(ReadOnlySpan<float> parameters, int member)
    {
        var plain = Plain;
        var result = new float[plain.Count];
        for (int l = 0; l < Layers; l++)
        {
            var layer = layers[l];
            for (int o = 0; o < layer.Outputs; o++)
            {
                float s = layer.HasOutputScale ? parameters[layer.OutputScale(member) + o] : 1f;
                for (int j = 0; j < layer.InputsPerGroup; j++)
                {
                    int input = layer.FirstInput(o) + j; // outside its group, output o's plain weights stay 0
                    float r = layer.HasInputScale ? parameters[layer.InputScale(member) + input] : 1f;
                    result[plain.WeightOffset(l) + o * layer.Inputs + input] = s * parameters[layer.Weight(member) + o * layer.InputsPerGroup + j] * r;
                }
                result[plain.BiasOffset(l) + o] = parameters[layer.Bias(member) + o];
            }
        }
        return result;
    }

    /// <summary>Tensors of layer l, each with its name in the model file and its shape: W, b, then r and s where the layer has them.</summary>
    public IEnumerable<LayerTensor> Tensors(int l)
    {
        var layer = layers[l];
        int[] Shape(bool perMember, params int[] dims) => perMember ? [Members, .. dims] : dims;
        yield return new("weight", Shape(layer.WeightStride > 0, layer.Outputs, layer.InputsPerGroup), layer.WeightOffset);
        yield return new("bias", Shape(layer.BiasStride > 0, layer.Outputs), layer.BiasOffset);
        if (layer.HasInputScale)
            yield return new("input_scale", [Members, layer.Inputs], layer.InputScaleOffset);
        if (layer.HasOutputScale)
            yield return new("output_scale", [Members, layer.Outputs], layer.OutputScaleOffset);
    }
}

/// <summary>One tensor of a layer: its name in the model file, its shape, and where its Length values start in the flat parameter array.</summary>
public readonly record struct LayerTensor(string Name, int[] Shape, int Offset)
{
    public int Length => Shape.Aggregate(1, (a, b) => a * b);
}
