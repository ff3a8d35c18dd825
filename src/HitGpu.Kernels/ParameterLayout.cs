// The network's shape, written once: each layer's widths, activation and place in the one flat parameter
// array [W0 (out, in), b0, W1, b1, ...] that gradients and Adam's moments share. The host code, the
// references, the model file and (through LayerShape, uploaded once) the kernels all read it from here.
namespace HitGpu.Kernels;

/// <summary>One layer as a kernel reads it: y = f(x W^T + b), W at WeightOffset (Outputs, Inputs), b at BiasOffset.</summary>
public struct LayerShape
{
    public int Inputs, Outputs;
    public int WeightOffset, BiasOffset; // into the flat parameter (and gradient, moment) array
    public int OutputOffset;             // into one row's outputs of all layers laid end to end
    public int Activation;               // an Activation, as int for the kernels
}

/// <summary>
/// Widths (inputs, hidden..., outputs), one activation per layer, and where each layer's weight and bias sit
/// in the flat parameter array.
/// </summary>
public sealed class ParameterLayout
{
    private readonly LayerShape[] layers;

    public IReadOnlyList<int> Widths { get; }
    public IReadOnlyList<Activation> Activations { get; }
    public int Layers => layers.Length;

    /// <summary>Parameters in all: the length of the flat array.</summary>
    public int Count { get; }

    /// <summary>Outputs of all layers together: one row's activations, laid end to end.</summary>
    public int ActivationWidth { get; }

    /// <param name="widths">inputs, then each layer's outputs</param>
    /// <param name="activations">one per layer; default ReLU on hidden layers and none on the last (a logit)</param>
    public ParameterLayout(IReadOnlyList<int> widths, IReadOnlyList<Activation>? activations = null)
    {
        if (widths.Count < 2 || widths.Any(w => w < 1))
            throw new ArgumentException($"a network needs at least an input and an output width, all positive; got [{string.Join(",", widths)}]");
        activations ??= Enumerable.Range(0, widths.Count - 1).Select(l => l == widths.Count - 2 ? Activation.Identity : Activation.Relu).ToArray();
        if (activations.Count != widths.Count - 1)
            throw new ArgumentException($"{widths.Count - 1} layers need as many activations, got {activations.Count}");
        Widths = widths.ToArray();
        Activations = activations.ToArray();
        layers = new LayerShape[widths.Count - 1];
        int parameters = 0, outputs = 0;
        for (int l = 0; l < layers.Length; l++)
        {
            int nIn = widths[l], nOut = widths[l + 1];
            layers[l] = new LayerShape
            {
                Inputs = nIn, Outputs = nOut, WeightOffset = parameters, BiasOffset = checked(parameters + nOut * nIn),
                OutputOffset = outputs, Activation = (int)activations[l],
            };
            // Checked: widths read from a file may be absurd, and a wrapped count would allocate nonsense.
            parameters = checked(parameters + nOut * nIn + nOut);
            outputs = checked(outputs + nOut);
        }
        Count = parameters;
        ActivationWidth = outputs;
    }

    /// <summary>inputs -> hidden (ReLU)... -> one logit: the sigmoid is fused with the loss.</summary>
    public static ParameterLayout ForClassifier(int inputs, IReadOnlyList<int> hidden) => new([inputs, .. hidden, 1]);

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

    /// <summary>Glorot-uniform weights (Keras' default, as in the original study) and zero biases, from a seed.</summary>
    public float[] Initialize(int seed)
    {
        var rng = new Random(seed);
        var parameters = new float[Count];
        for (int l = 0; l < Layers; l++)
        {
            double limit = Math.Sqrt(6.0 / (Inputs(l) + Outputs(l)));
            for (int i = 0; i < Inputs(l) * Outputs(l); i++)
                parameters[WeightOffset(l) + i] = (float)((rng.NextDouble() * 2 - 1) * limit);
        }
        return parameters;
    }
}
