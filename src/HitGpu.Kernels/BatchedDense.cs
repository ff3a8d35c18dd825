// A batched-ensemble layer: k members over the same rows in one pass (TabM's BatchEnsemble and its kin).
// Row-member rm = b k + i is batch row b seen by member i; member i computes
//   y[rm] = f(((x[b or rm] * r_i) W_i^T) * s_i + b_i)
// with W and b shared or per member and r, s present or not, as the LayerShape says (ParameterLayout).
// Layer 0 reads one input row per batch row (all members see the same features); later layers one per row-member.
//
// Backward, from d = dL/dz at the pre-activation (rows k, out):
//   dpre = d * s_i                      the gradient at (x * r_i) W_i^T
//   dW_i += dpre^T (x * r_i)            summed over the rows of member i (all row-members when W is shared)
//   db_i += d,  ds_i += d * pre         likewise
//   g = dpre W_i                        the gradient at x * r_i
//   dr_i += g * x,  dx = g * r_i * f'(x)   (layer 0 with shared input rows: dx[b] = sum_i g[b k + i] * r_i)
// A grouped layer (ParameterLayout) sums output o over its group's inputs only: W's rows are InputsPerGroup long.
// One member without adapters is the plain dense layer y = f(x W^T + b): every layer of a network runs here.
// This file: the arguments, the summation order, the device functions every kernel shares, and the one layer
// reference. Its kernels, each summing in row-member order (no atomics, the same bits each run):
// BatchedDenseSimple.cs (one output a work item), BatchedDenseLanes.cs (four a work item), DenseTiled.cs (the
// tiled products), BatchedDenseReductions.cs (dr, ds, layer 0's sum over members); their launchers and the
// variant the plan picks: BatchedDenseLaunch.cs.
using System.Numerics;
using ILGPU;

namespace HitGpu.Kernels;

public struct BatchedLayerArgs
{
    public RowSource X;                          // the layer's input rows: (rows, in) when InputShared, else (rows k, in)
    public ArrayView<float> Parameters;          // the flat parameter array
    public ArrayView<float> Gradients;           // the flat gradient array (backward)
    public ArrayView<float> PreScale;            // (rows k, out) (x * r) W^T, when the layer has s
    public ArrayView<float> PreActivation;       // (rows k, out) z, when the layer keeps it (a cosine)
    public ArrayView<float> InputPreActivation;  // (rows k, in) the previous layer's z, when its slope needs it
    public ArrayView<float> Y;                   // (rows k, out) activated outputs (forward)
    public ArrayView<float> OutputGradient;      // (rows k, out) dL/dz (backward)
    public ArrayView<float> ScaledInputGradient; // (rows k, in) g, the gradient at x * r (backward, when needed)
    public ArrayView<float> InputGradient;       // dL/dz of the previous layer: (rows k, in), or (rows, in) when InputShared
    public LayerShape Layer;
    public int Rows, Members;
    public int InputShared;                      // 1: row-member rm reads input row rm / k (layer 0)
    public int InputActivation;                  // the activation that produced X
}

/// <summary>
/// The order in which one output's terms are added (<see cref="BatchedDense.SumStart"/>): the bits of a sum
/// depend on it, so the paths that must agree to the bit name the same one.
/// </summary>
public enum SumOrder
{
    /// <summary>
    /// The bias first, then the inputs in order (without s): the simple layered kernels (Dense's and these) and
    /// the CPU epoch's prediction, so that on the CPU accelerator (whose plan picks the simple kernels)
    /// prediction gives the same bits on either path. The tiled product adds the bias in its epilogue instead.
    /// </summary>
    FromBias,
    /// <summary>The inputs from 0, the bias after: the CPU epoch's training and scoring passes (a lone row in four running sums).</summary>
    BiasLast,
}

/// <summary>Where an engine keeps one row-member's values of a layer (<see cref="BatchedDense.StoreOutput"/>).</summary>
public interface IOutputRow
{
    /// <summary>Output o's sum before s (the layer has s).</summary>
    void PreScale(in LayerShape layer, int o, float sum);

    /// <summary>Output o's pre-activation z (the layer keeps it: a cosine).</summary>
    void PreActivation(in LayerShape layer, int o, float z);

    /// <summary>Output o's activated (and dropped-out) value.</summary>
    void Output(in LayerShape layer, int o, float y);
}

/// <summary>The layered kernels' row: row-member rm's outputs at rm * out in each of the layer's own buffers.</summary>
public readonly struct LayerRow(in BatchedLayerArgs a, int at) : IOutputRow
{
    private readonly ArrayView<float> preScale = a.PreScale, preActivation = a.PreActivation, y = a.Y;

    public void PreScale(in LayerShape layer, int o, float sum) => preScale[at + o] = sum;

    public void PreActivation(in LayerShape layer, int o, float z) => preActivation[at + o] = z;

    public void Output(in LayerShape layer, int o, float value) => y[at + o] = value;
}

public static partial class BatchedDense
{
    // ---- device functions ----

    /// <summary>The input row of row-member rm.</summary>
    public static int InputRow(int rm, int members, int inputShared) => inputShared != 0 ? rm / members : rm;

    /// <summary>
    /// Where the sum of one output starts: the one statement of the summation order. The simple layered kernels
    /// and the CPU epoch's prediction sum <see cref="SumOrder.FromBias"/>; the CPU epoch's training passes
    /// <see cref="SumOrder.BiasLast"/>. With s the sum always starts at 0 (s scales the sum before the bias).
    /// </summary>
    public static float SumStart(in LayerShape layer, float bias, SumOrder order) =>
        order == SumOrder.FromBias && !layer.HasOutputScale ? bias : 0f;

    /// <summary>The pre-activation from the sum over the inputs: sum s + b with s; else sum + b, unless the bias started the sum
    /// (<see cref="SumStart"/>).</summary>
    public static float Epilogue(in LayerShape layer, float sum, float bias, float s, SumOrder order) =>
        layer.HasOutputScale ? sum * s + bias : order == SumOrder.FromBias ? sum : sum + bias;

    /// <summary>
    /// The sum over the inputs of one output o of member <paramref name="member"/>, from <see cref="SumStart"/>
    /// in <see cref="SumOrder.FromBias"/>: sum_j (x_j r_j) W_oj, from b_o where the layer has no s.
    /// </summary>
    public static float InputSum(ArrayView<float> x, int xStart, ArrayView<float> p, in LayerShape layer, int member, int o, float bias)
    {
        int n = layer.InputsPerGroup, first = layer.FirstInput(o);
        int w = layer.Weight(member) + o * n, r = layer.InputScale(member) + first;
        xStart += first;
        float sum = SumStart(layer, bias, SumOrder.FromBias);
        if (layer.HasInputScale)
            for (int j = 0; j < n; j++)
                sum += x[xStart + j] * p[r + j] * p[w + j];
        else
            for (int j = 0; j < n; j++)
                sum += x[xStart + j] * p[w + j];
        return sum;
    }

    /// <summary>
    /// The output epilogue of one output o of one row-member, the one statement of it for every kernel of every
    /// engine: the sum before s kept where the layer has s, the scale and bias (<see cref="Epilogue"/>), z kept
    /// where the layer keeps it (a cosine), the activation, then dropout's factor (1 where none applies).
    /// Where each value is kept is the engine's (<typeparamref name="TRow"/>).
    /// </summary>
    public static void StoreOutput<TRow>(TRow row, in LayerShape layer, int o, float sum, float bias, float s, SumOrder order, float dropout)
        where TRow : struct, IOutputRow
    {
        if (layer.HasOutputScale)
            row.PreScale(layer, o, sum);
        float z = Epilogue(layer, sum, bias, s, order);
        if (layer.KeepsPreActivation)
            row.PreActivation(layer, o, z);
        // ReLU written out (Activations.Apply's own expression): the call was 7% of the CPU epoch's scoring samples.
        float y = layer.Activation == (int)Activation.Relu ? (z > 0f ? z : 0f) : Activations.Apply(layer.Activation, z);
        row.Output(layer, o, y * dropout);
    }

    // ---- reference (any float type; the flat arrays as the ParameterLayout says) ----

    /// <summary>Forward of one layer for <paramref name="rows"/> batch rows: y (rows k, out), preScale likewise (when the layer has s).</summary>
    public static void ForwardReference<T>(LayerShape layer, int members, bool inputShared, ReadOnlySpan<T> x, ReadOnlySpan<T> p,
        Span<T> y, Span<T> preScale, int rows, Span<T> preActivation = default) where T : IFloatingPointIeee754<T>
    {
        int nIn = layer.Inputs, nOut = layer.Outputs;
        for (int rm = 0; rm < rows * members; rm++)
        {
            int i = rm % members, xStart = (inputShared ? rm / members : rm) * nIn;
            for (int o = 0; o < nOut; o++)
            {
                T bias = p[layer.Bias(i) + o];
                T sum = layer.HasOutputScale ? T.Zero : bias;
                for (int j = 0, first = layer.FirstInput(o); j < layer.InputsPerGroup; j++)
                {
                    T input = layer.HasInputScale ? x[xStart + first + j] * p[layer.InputScale(i) + first + j] : x[xStart + first + j];
                    sum += input * p[layer.Weight(i) + o * layer.InputsPerGroup + j];
                }
                if (layer.HasOutputScale)
                {
                    preScale[rm * nOut + o] = sum;
                    sum = sum * p[layer.OutputScale(i) + o] + bias;
                }
                if (layer.KeepsPreActivation)
                    preActivation[rm * nOut + o] = sum;
                y[rm * nOut + o] = Activations.ApplyReference((Activation)layer.Activation, sum);
            }
        }
    }

    /// <summary>
    /// Backward of one layer: the layer's parameter gradients written (not added) into <paramref name="gradient"/>,
    /// and, when <paramref name="inputGradient"/> is not empty, dL/dz of the previous layer (through
    /// <paramref name="inputActivation"/>'s derivative at x, or at <paramref name="inputPreActivation"/> for a
    /// cosine).
    /// </summary>
    public static void BackwardReference<T>(LayerShape layer, int members, bool inputShared, ReadOnlySpan<T> xRows, ReadOnlySpan<T> parameters,
        ReadOnlySpan<T> preScale, ReadOnlySpan<T> dz, Span<T> gradient, Span<T> inputGradient, int rows, Activation inputActivation,
        ReadOnlySpan<T> inputPreActivation = default)
        where T : IFloatingPointIeee754<T>
    {
        T[] x = xRows.ToArray(), p = parameters.ToArray(), outputGradient = dz.ToArray(), xPre = inputPreActivation.ToArray();
        T Slope(int at) => Activations.DerivativeReference(inputActivation, x[at], xPre.Length > 0 ? xPre[at] : T.Zero);
        int nIn = layer.Inputs, nOut = layer.Outputs, rowMembers = rows * members;
        T XScaled(int rm, int j) => layer.HasInputScale ? x[Row(rm) * nIn + j] * p[layer.InputScale(rm % members) + j] : x[Row(rm) * nIn + j];
        int Row(int rm) => inputShared ? rm / members : rm;
        T ScaledGradient(int rm, int o) => layer.HasOutputScale ? outputGradient[rm * nOut + o] * p[layer.OutputScale(rm % members) + o]
            : outputGradient[rm * nOut + o];
        bool Counts(int rm, int owner, int stride) => stride == 0 || rm % members == owner;

        int perGroup = layer.InputsPerGroup;
        for (int owner = 0; owner < (layer.WeightStride > 0 ? members : 1); owner++)
            for (int o = 0; o < nOut; o++)
                for (int j = 0; j < perGroup; j++)
                {
                    T sum = T.Zero;
                    for (int rm = 0; rm < rowMembers; rm++)
                        if (Counts(rm, owner, layer.WeightStride))
                            sum += ScaledGradient(rm, o) * XScaled(rm, layer.FirstInput(o) + j);
                    gradient[layer.Weight(owner) + o * perGroup + j] = sum;
                }
        for (int owner = 0; owner < (layer.BiasStride > 0 ? members : 1); owner++)
            for (int o = 0; o < nOut; o++)
            {
                T sum = T.Zero;
                for (int rm = 0; rm < rowMembers; rm++)
                    if (Counts(rm, owner, layer.BiasStride))
                        sum += outputGradient[rm * nOut + o];
                gradient[layer.Bias(owner) + o] = sum;
            }
        if (layer.HasOutputScale)
            for (int i = 0; i < members; i++)
                for (int o = 0; o < nOut; o++)
                {
                    T sum = T.Zero;
                    for (int rm = i; rm < rowMembers; rm += members)
                        sum += outputGradient[rm * nOut + o] * preScale[rm * nOut + o];
                    gradient[layer.OutputScale(i) + o] = sum;
                }

        var g = new T[rowMembers * nIn]; // the gradient at x * r
        for (int rm = 0; rm < rowMembers; rm++)
            for (int j = 0; j < nIn; j++)
            {
                T sum = T.Zero;
                int group = j / perGroup;
                for (int o = group * layer.OutputsPerGroup; o < (group + 1) * layer.OutputsPerGroup; o++)
                    sum += ScaledGradient(rm, o) * p[layer.Weight(rm % members) + o * perGroup + j - group * perGroup];
                g[rm * nIn + j] = sum;
            }
        if (layer.HasInputScale)
            for (int i = 0; i < members; i++)
                for (int j = 0; j < nIn; j++)
                {
                    T sum = T.Zero;
                    for (int rm = i; rm < rowMembers; rm += members)
                        sum += g[rm * nIn + j] * x[Row(rm) * nIn + j];
                    gradient[layer.InputScale(i) + j] = sum;
                }
        if (inputGradient.IsEmpty)
            return;
        T R(int rm, int j) => layer.HasInputScale ? p[layer.InputScale(rm % members) + j] : T.One;
        if (inputShared)
        {
            for (int b = 0; b < rows; b++)
                for (int j = 0; j < nIn; j++)
                {
                    T sum = T.Zero;
                    for (int i = 0; i < members; i++)
                        sum += g[(b * members + i) * nIn + j] * R(b * members + i, j);
                    inputGradient[b * nIn + j] = sum * Slope(b * nIn + j);
                }
            return;
        }
        for (int rm = 0; rm < rowMembers; rm++)
            for (int j = 0; j < nIn; j++)
                inputGradient[rm * nIn + j] = g[rm * nIn + j] * R(rm, j) * Slope(rm * nIn + j);
    }

    /// <summary>The slope of the activation that produced input (row, j): from the input, or for a cosine from its stored pre-activation.</summary>
    private static float InputSlope(in BatchedLayerArgs a, int row, int j) =>
        Activations.Derivative(a.InputActivation, a.X.Data[a.X.RowStart(row) + j],
            a.InputActivation == (int)Activation.Cos ? a.InputPreActivation[row * a.Layer.Inputs + j] : 0f);
}
