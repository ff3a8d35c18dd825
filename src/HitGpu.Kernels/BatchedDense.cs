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
// Reference, kernels (one element per work item, sums in row-member order: no atomics, the same bits each
// run) and launchers, side by side. One member without adapters is Dense's layer (Dense keeps the tiled
// kernels for it); the reference then does Dense's sums in Dense's order.
using System.Numerics;
using ILGPU;
using ILGPU.Runtime;

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

public static class BatchedDense
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

    /// <summary>The pre-activation from the sum over the inputs: sum s + b with s; else sum + b, unless the bias started the sum (<see cref="SumStart"/>).</summary>
    public static float Epilogue(in LayerShape layer, float sum, float bias, float s, SumOrder order) =>
        layer.HasOutputScale ? sum * s + bias : order == SumOrder.FromBias ? sum : sum + bias;

    /// <summary>
    /// The pre-activation of one output, summed <see cref="SumOrder.FromBias"/>: (sum_j (x_j r_j) W_oj) s_o + b_o
    /// with s, b_o + sum_j ... without. Writes the sum before s to <paramref name="preScale"/>.
    /// </summary>
    public static float PreActivation(ArrayView<float> x, int xStart, ArrayView<float> p, in LayerShape layer, int member, int o, out float preScale)
    {
        int n = layer.InputsPerGroup, first = layer.FirstInput(o);
        int w = layer.Weight(member) + o * n, r = layer.InputScale(member) + first;
        xStart += first;
        float bias = p[layer.Bias(member) + o];
        float sum = SumStart(layer, bias, SumOrder.FromBias);
        if (layer.HasInputScale)
            for (int j = 0; j < n; j++)
                sum += x[xStart + j] * p[r + j] * p[w + j];
        else
            for (int j = 0; j < n; j++)
                sum += x[xStart + j] * p[w + j];
        preScale = sum;
        return Epilogue(layer, sum, bias, layer.HasOutputScale ? p[layer.OutputScale(member) + o] : 1f, SumOrder.FromBias);
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
        T ScaledGradient(int rm, int o) => layer.HasOutputScale ? outputGradient[rm * nOut + o] * p[layer.OutputScale(rm % members) + o] : outputGradient[rm * nOut + o];
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

    // ---- kernels ----
    // The simple ones, one output per work item, are the CPU accelerator's (and grouped layers'); a GPU runs
    // the layer as tiled products (BatchedDenseForward / Backward below; DenseTiled.cs) and the three
    // reductions that are not products (dr, ds, layer 0's sum over members), unrolled by four in order.

    /// <summary>One output element (rm, o) per work item.</summary>
    public static void SimpleForwardKernel(BatchedLayerArgs a, int blocked)
    {
        int nOut = a.Layer.Outputs;
        var range = WorkRange.OfThread(a.Rows * a.Members * nOut, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int rm = e / nOut, o = e - rm * nOut;
            float z = PreActivation(a.X.Data, a.X.RowStart(InputRow(rm, a.Members, a.InputShared)), a.Parameters, a.Layer, rm % a.Members, o, out float pre);
            if (a.Layer.HasOutputScale)
                a.PreScale[e] = pre;
            if (a.Layer.KeepsPreActivation)
                a.PreActivation[e] = z;
            a.Y[e] = Activations.Apply(a.Layer.Activation, z);
        }
    }

    private static float ScaledGradient(in BatchedLayerArgs a, int rm, int o) =>
        a.Layer.HasOutputScale ? a.OutputGradient[rm * a.Layer.Outputs + o] * a.Parameters[a.Layer.OutputScale(rm % a.Members) + o] : a.OutputGradient[rm * a.Layer.Outputs + o];

    private static float ScaledInput(in BatchedLayerArgs a, int rm, int j)
    {
        float x = a.X.Data[a.X.RowStart(InputRow(rm, a.Members, a.InputShared)) + j];
        return a.Layer.HasInputScale ? x * a.Parameters[a.Layer.InputScale(rm % a.Members) + j] : x;
    }

    /// <summary>
    /// One parameter gradient per work item, each a sum over row-members in order: the weights (every
    /// member's, or the shared ones), then the biases, then the output scales s.
    /// </summary>
    public static void SimpleParameterGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int nIn = layer.InputsPerGroup, nOut = layer.Outputs, rowMembers = a.Rows * a.Members;
        int weightOwners = layer.WeightStride > 0 ? a.Members : 1, biasOwners = layer.BiasStride > 0 ? a.Members : 1;
        int weights = weightOwners * nOut * nIn, biases = biasOwners * nOut, scales = layer.HasOutputScale ? a.Members * nOut : 0;
        var range = WorkRange.OfThread(weights + biases + scales, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            float sum = 0f;
            if (e < weights)
            {
                int owner = e / (nOut * nIn), oj = e - owner * nOut * nIn, o = oj / nIn, j = oj - o * nIn;
                int first = weightOwners > 1 ? owner : 0, step = weightOwners > 1 ? a.Members : 1;
                int input = layer.FirstInput(o) + j;
                for (int rm = first; rm < rowMembers; rm += step)
                    sum += ScaledGradient(a, rm, o) * ScaledInput(a, rm, input);
                a.Gradients[layer.WeightOffset + e] = sum;
            }
            else if (e < weights + biases)
            {
                int owner = (e - weights) / nOut, o = e - weights - owner * nOut;
                int first = biasOwners > 1 ? owner : 0, step = biasOwners > 1 ? a.Members : 1;
                for (int rm = first; rm < rowMembers; rm += step)
                    sum += a.OutputGradient[rm * nOut + o];
                a.Gradients[layer.BiasOffset + e - weights] = sum;
            }
            else
            {
                int io = e - weights - biases, i = io / nOut, o = io - i * nOut;
                for (int rm = i; rm < rowMembers; rm += a.Members)
                    sum += a.OutputGradient[rm * nOut + o] * a.PreScale[rm * nOut + o];
                a.Gradients[layer.OutputScaleOffset + io] = sum;
            }
        }
    }

    /// <summary>
    /// One element (rm, j) of g = dpre W_i per work item: stored in ScaledInputGradient when the layer has r or
    /// its input rows are shared (the kernels after this one read it), else straight to dx = g f'(x).
    /// </summary>
    public static void SimpleScaledInputGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int nIn = layer.Inputs, nOut = layer.Outputs;
        var range = WorkRange.OfThread(a.Rows * a.Members * nIn, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int rm = e / nIn, j = e - rm * nIn, perGroup = layer.InputsPerGroup, group = j / perGroup;
            int w = layer.Weight(rm % a.Members) + j - group * perGroup;
            float g = 0f;
            for (int o = group * layer.OutputsPerGroup; o < (group + 1) * layer.OutputsPerGroup; o++)
                g += ScaledGradient(a, rm, o) * a.Parameters[w + o * perGroup];
            if (layer.HasInputScale || a.InputShared != 0)
                a.ScaledInputGradient[e] = g;
            else
                a.InputGradient[e] = g * InputSlope(a, rm, j);
        }
    }

    /// <summary>
    /// One input scale's gradient (i, j) per work item: sum over member i's rows of g x, four rows a pass (the
    /// terms added in row order, as one at a time: the same sum).
    /// </summary>
    public static void InputScaleGradientKernel(BatchedLayerArgs a, int blocked)
    {
        int nIn = a.Layer.Inputs, k = a.Members;
        var range = WorkRange.OfThread(a.Members * nIn, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int i = e / nIn, j = e - i * nIn, b = 0;
            float sum = 0f;
            for (; b + 4 <= a.Rows; b += 4)
            {
                int rm = b * k + i;
                sum += a.ScaledInputGradient[rm * nIn + j] * a.X.Data[a.X.RowStart(InputRow(rm, k, a.InputShared)) + j];
                sum += a.ScaledInputGradient[(rm + k) * nIn + j] * a.X.Data[a.X.RowStart(InputRow(rm + k, k, a.InputShared)) + j];
                sum += a.ScaledInputGradient[(rm + 2 * k) * nIn + j] * a.X.Data[a.X.RowStart(InputRow(rm + 2 * k, k, a.InputShared)) + j];
                sum += a.ScaledInputGradient[(rm + 3 * k) * nIn + j] * a.X.Data[a.X.RowStart(InputRow(rm + 3 * k, k, a.InputShared)) + j];
            }
            for (; b < a.Rows; b++)
            {
                int rm = b * k + i;
                sum += a.ScaledInputGradient[rm * nIn + j] * a.X.Data[a.X.RowStart(InputRow(rm, k, a.InputShared)) + j];
            }
            a.Gradients[a.Layer.InputScaleOffset + e] = sum;
        }
    }

    /// <summary>One output scale's gradient (i, o) per work item: sum over member i's rows of dL/dz times the sum before s, four rows a pass, in row order.</summary>
    public static void OutputScaleGradientKernel(BatchedLayerArgs a, int blocked)
    {
        int nOut = a.Layer.Outputs, k = a.Members;
        var range = WorkRange.OfThread(a.Members * nOut, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int i = e / nOut, o = e - i * nOut, b = 0, step = k * nOut;
            float sum = 0f;
            for (; b + 4 <= a.Rows; b += 4)
            {
                int at = (b * k + i) * nOut + o;
                sum += a.OutputGradient[at] * a.PreScale[at];
                sum += a.OutputGradient[at + step] * a.PreScale[at + step];
                sum += a.OutputGradient[at + 2 * step] * a.PreScale[at + 2 * step];
                sum += a.OutputGradient[at + 3 * step] * a.PreScale[at + 3 * step];
            }
            for (; b < a.Rows; b++)
            {
                int at = (b * k + i) * nOut + o;
                sum += a.OutputGradient[at] * a.PreScale[at];
            }
            a.Gradients[a.Layer.OutputScaleOffset + e] = sum;
        }
    }

    /// <summary>
    /// One element of dx per work item from the stored g: dx[rm] = g r_i f'(x) per row-member, or, for shared
    /// input rows, dx[b] = sum_i g[b k + i] r_i f'(x) (the inputs' gradient, for explanations).
    /// </summary>
    public static void InputGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int nIn = layer.Inputs, k = a.Members;
        int rows = a.InputShared != 0 ? a.Rows : a.Rows * k, perRow = a.InputShared != 0 ? k : 1;
        var range = WorkRange.OfThread(rows * nIn, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int row = e / nIn, j = e - row * nIn, first = row * perRow, m = 0;
            float sum = 0f;
            if (layer.HasInputScale)
            {
                // g r_i over the row's members, four a pass, in member order (rm = first + m has member m, or rm mod k alone).
                int scale = layer.InputScaleOffset + j;
                for (; m + 4 <= perRow; m += 4)
                {
                    int g = (first + m) * nIn + j;
                    sum += a.ScaledInputGradient[g] * a.Parameters[scale + m * nIn];
                    sum += a.ScaledInputGradient[g + nIn] * a.Parameters[scale + (m + 1) * nIn];
                    sum += a.ScaledInputGradient[g + 2 * nIn] * a.Parameters[scale + (m + 2) * nIn];
                    sum += a.ScaledInputGradient[g + 3 * nIn] * a.Parameters[scale + (m + 3) * nIn];
                }
                for (; m < perRow; m++)
                {
                    int rm = first + m;
                    sum += a.ScaledInputGradient[rm * nIn + j] * a.Parameters[layer.InputScale(rm % k) + j];
                }
            }
            else
            {
                for (; m < perRow; m++)
                    sum += a.ScaledInputGradient[(first + m) * nIn + j];
            }
            a.InputGradient[e] = sum * InputSlope(a, row, j);
        }
    }

    /// <summary>The slope of the activation that produced input (row, j): from the input, or for a cosine from its stored pre-activation.</summary>
    private static float InputSlope(in BatchedLayerArgs a, int row, int j) =>
        Activations.Derivative(a.InputActivation, a.X.Data[a.X.RowStart(row) + j],
            a.InputActivation == (int)Activation.Cos ? a.InputPreActivation[row * a.Layer.Inputs + j] : 0f);
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, BatchedLayerArgs, int>? batchedForward, batchedParameterGradient, batchedScaledInputGradient,
        batchedInputScaleGradient, batchedOutputScaleGradient, batchedInputGradient;

    // ---- the layer as tiled products (a GPU's; DenseTiled.cs) ----

    /// <summary>The layer's parameters from <paramref name="offset"/> on, as rows of <paramref name="cols"/>.</summary>
    private static RowSource ParameterRows(in BatchedLayerArgs a, int offset, int cols) => RowSource.InPlace(a.Parameters.SubView(offset), cols, a.X.Index);

    /// <summary>
    /// The products' common frame: members and slabs (one per member where the weights are the member's own,
    /// their rows b k + i; else one slab over all row-members, member rm mod k).
    /// </summary>
    private static ProductArgs BatchedProduct(in BatchedLayerArgs a, bool perMember) => new()
    {
        Members = a.Members, Slabs = perMember ? a.Members : 1,
    };

    /// <summary>The layer's input as an operand: row-members, or layer 0's input rows shared by them; times r where the layer has it.</summary>
    private static ProductOperand BatchedInput(in BatchedLayerArgs a) => new()
    {
        Rows = a.X, RowMembers = a.InputShared != 0 ? 2 : 1,
        ScaleStride = a.Layer.HasInputScale ? a.Layer.Inputs : 0,
        Scales = a.Layer.HasInputScale ? a.Parameters.SubView(a.Layer.InputScaleOffset) : default,
    };

    /// <summary>dL/dz as an operand, its rows row-members (or all rows, <paramref name="rowMembers"/> false); times s where the layer has it and <paramref name="scaled"/>.</summary>
    private static ProductOperand BatchedOutputGradient(in BatchedLayerArgs a, bool rowMembers, bool scaled) => new()
    {
        Rows = RowSource.InPlace(a.OutputGradient, a.Layer.Outputs, a.X.Index), RowMembers = rowMembers ? 1 : 0,
        ScaleStride = scaled && a.Layer.HasOutputScale ? a.Layer.Outputs : 0,
        Scales = scaled && a.Layer.HasOutputScale ? a.Parameters.SubView(a.Layer.OutputScaleOffset) : default,
    };

    /// <summary>Whether a GPU's products run this layer (dense layers; a grouped one keeps the simple kernels).</summary>
    private bool BatchedAsProducts(in BatchedLayerArgs a) =>
        a.Layer.Groups == 1 && Plan.DenseVariantFor(a.Rows * a.Members, a.Layer.Outputs, a.Layer.Inputs) == DenseVariant.Tiled;

    /// <summary>Y = f(((X r) W^T) s + b): one product over the row-members (shared W) or one per member (its own W), r as the input is loaded, s, b and f in the epilogue.</summary>
    private void BatchedForwardProducts(in BatchedLayerArgs a)
    {
        var layer = a.Layer;
        var p = BatchedProduct(a, layer.WeightStride > 0);
        p.A = BatchedInput(a);
        p.B = new ProductOperand { Rows = ParameterRows(a, layer.WeightOffset, layer.Inputs), SlabStride = layer.WeightStride };
        p.M = p.Slabs > 1 ? a.Rows : a.Rows * a.Members;
        p.N = layer.Outputs;
        p.K = layer.Inputs;
        p.C = a.Y;
        p.CRowMembers = 1;
        p.HasBias = 1;
        p.Bias = a.Parameters.SubView(layer.BiasOffset);
        p.BiasStride = layer.BiasStride;
        if (layer.HasOutputScale)
        {
            p.HasOutputScale = 1;
            p.OutputScale = a.Parameters.SubView(layer.OutputScaleOffset);
            p.OutputScaleStride = layer.Outputs;
            p.PreScale = a.PreScale;
        }
        p.KeepsPreActivation = layer.KeepsPreActivation ? 1 : 0;
        p.PreActivation = a.PreActivation;
        p.Activation = layer.Activation;
        TiledProduct(p, aKAlongRows: true, bKAlongRows: true);
    }

    /// <summary>
    /// dW = (dZ s)^T (X r) and db = dZ^T 1 as products over the row-members (shared) or each member's rows (its
    /// own); then g = (dZ s) W, stored where r or shared input rows need it, else straight into dx = g f'(x)
    /// (with r and per-member rows, dx = g r f'(x) from the same epilogue, g kept).
    /// </summary>
    private void BatchedBackwardProducts(in BatchedLayerArgs a, bool withInputGradient)
    {
        var layer = a.Layer;
        bool perMemberWeights = layer.WeightStride > 0;
        var w = BatchedProduct(a, perMemberWeights);
        w.A = BatchedOutputGradient(a, rowMembers: true, scaled: true);
        w.B = BatchedInput(a);
        w.M = layer.Outputs;
        w.N = layer.Inputs;
        w.K = perMemberWeights ? a.Rows : a.Rows * a.Members;
        w.C = a.Gradients.SubView(layer.WeightOffset);
        w.CSlabStride = layer.WeightStride;
        TiledProduct(w, aKAlongRows: false, bKAlongRows: false);

        bool perMemberBias = layer.BiasStride > 0;
        var b = BatchedProduct(a, perMemberBias);
        b.A = BatchedOutputGradient(a, rowMembers: perMemberBias, scaled: false);
        b.B = ProductOperand.Of(RowSource.InPlace(Ones(a.Rows * a.Members), 1, a.X.Index));
        b.M = layer.Outputs;
        b.N = 1;
        b.K = perMemberBias ? a.Rows : a.Rows * a.Members;
        b.C = a.Gradients.SubView(layer.BiasOffset);
        b.CSlabStride = layer.BiasStride;
        TiledProduct(b, aKAlongRows: false, bKAlongRows: false);

        if (layer.HasOutputScale)
        {
            var shape = Plan.ShapeFor(a.Members * layer.Outputs);
            (batchedOutputScaleGradient ??= Accelerator.LoadStreamKernel<BatchedLayerArgs, int>(BatchedDense.OutputScaleGradientKernel))(shape.Config, a, shape.BlockedFlag);
        }
        bool stored = layer.HasInputScale || a.InputShared != 0;
        if (!layer.HasInputScale && !withInputGradient)
            return;
        var g = BatchedProduct(a, perMemberWeights);
        g.A = BatchedOutputGradient(a, rowMembers: true, scaled: true);
        g.B = new ProductOperand { Rows = ParameterRows(a, layer.WeightOffset, layer.Inputs), SlabStride = layer.WeightStride };
        g.M = perMemberWeights ? a.Rows : a.Rows * a.Members;
        g.N = layer.Inputs;
        g.K = layer.Outputs;
        g.CRowMembers = 1;
        bool inputGradientHere = withInputGradient && a.InputShared == 0;
        if (inputGradientHere)
        {
            g.C = a.InputGradient;
            g.HasDerivative = 1;
            g.Derivative = a.X;
            g.DerivativeActivation = a.InputActivation;
            g.DerivativePre = a.InputPreActivation;
            if (layer.HasInputScale)
            {
                // The epilogue keeps g (for dr) and goes on to dx = g r f'(x).
                g.HasOutputScale = 1;
                g.OutputScale = a.Parameters.SubView(layer.InputScaleOffset);
                g.OutputScaleStride = layer.Inputs;
                g.PreScale = a.ScaledInputGradient;
            }
        }
        else
        {
            g.C = a.ScaledInputGradient;
        }
        TiledProduct(g, aKAlongRows: true, bKAlongRows: false);
        if (layer.HasInputScale)
        {
            var shape = Plan.ShapeFor(a.Members * layer.Inputs);
            (batchedInputScaleGradient ??= Accelerator.LoadStreamKernel<BatchedLayerArgs, int>(BatchedDense.InputScaleGradientKernel))(shape.Config, a, shape.BlockedFlag);
        }
        if (withInputGradient && stored && !inputGradientHere)
        {
            var shape = Plan.ShapeFor(a.Rows * layer.Inputs);
            (batchedInputGradient ??= Accelerator.LoadStreamKernel<BatchedLayerArgs, int>(BatchedDense.InputGradientKernel))(shape.Config, a, shape.BlockedFlag);
        }
    }

    private static void CheckBatched(in BatchedLayerArgs a, string what)
    {
        var layer = a.Layer;
        Require(a.Members >= 1 && a.Rows >= 0, $"{what}: members must be at least 1");
        a.X.Check(a.InputShared != 0 ? a.Rows : a.Rows * a.Members, $"{what} x");
        Require(a.X.Cols == layer.Inputs, $"{what}: x must have the layer's {layer.Inputs} columns");
        Require(layer.Groups >= 1 && layer.Inputs % layer.Groups == 0 && layer.Outputs % layer.Groups == 0, $"{what}: the groups must divide the widths");
        long weights = (layer.WeightStride > 0 ? (long)a.Members : 1) * layer.Outputs * layer.InputsPerGroup;
        Require(layer.WeightOffset >= 0 && layer.WeightOffset + weights <= a.Parameters.Length
            && layer.BiasOffset + (layer.BiasStride > 0 ? (long)a.Members : 1) * layer.Outputs <= a.Parameters.Length
            && (!layer.HasInputScale || layer.InputScaleOffset + (long)a.Members * layer.Inputs <= a.Parameters.Length)
            && (!layer.HasOutputScale || layer.OutputScaleOffset + (long)a.Members * layer.Outputs <= a.Parameters.Length),
            $"{what}: the layer's tensors lie outside the parameters");
        Require(!layer.HasOutputScale || a.PreScale.Length >= (long)a.Rows * a.Members * layer.Outputs, $"{what}: pre-scale sums must hold (rows k, out)");
        Require(!layer.KeepsPreActivation || a.PreActivation.Length >= (long)a.Rows * a.Members * layer.Outputs, $"{what}: pre-activations must hold (rows k, out)");
        Require(a.InputActivation != (int)Activation.Cos || (a.InputShared == 0 && a.InputPreActivation.Length >= (long)a.Rows * a.Members * layer.Inputs),
            $"{what}: a cosine input needs its pre-activations (rows k, in)");
    }

    /// <summary>Y = f(((X r) W^T) s + b) for every row-member, PreScale kept where the layer has s.</summary>
    public void BatchedDenseForward(in BatchedLayerArgs a)
    {
        CheckBatched(a, "batched dense forward");
        Require(a.Y.Length >= (long)a.Rows * a.Members * a.Layer.Outputs, "batched dense forward: y must hold (rows k, out)");
        if (BatchedAsProducts(a))
        {
            BatchedForwardProducts(a);
            return;
        }
        var shape = Plan.ShapeFor(a.Rows * a.Members * a.Layer.Outputs);
        (batchedForward ??= Accelerator.LoadStreamKernel<BatchedLayerArgs, int>(BatchedDense.SimpleForwardKernel))(shape.Config, a, shape.BlockedFlag);
    }

    /// <summary>The layer's parameter gradients (W, b, s, r), then, unless <paramref name="withInputGradient"/> is false, dL/dz of its input.</summary>
    public void BatchedDenseBackward(in BatchedLayerArgs a, bool withInputGradient)
    {
        CheckBatched(a, "batched dense backward");
        var layer = a.Layer;
        int rowMembers = a.Rows * a.Members;
        Require(a.OutputGradient.Length >= (long)rowMembers * layer.Outputs, "batched dense backward: output gradient must hold (rows k, out)");
        Require(a.Gradients.Length == a.Parameters.Length, "batched dense backward: gradients must match the parameters");
        // Every buffer checked before anything is launched (both routes below read them).
        bool stored = layer.HasInputScale || a.InputShared != 0;
        Require(!(stored && (layer.HasInputScale || withInputGradient)) || a.ScaledInputGradient.Length >= (long)rowMembers * layer.Inputs,
            "batched dense backward: scaled-input gradient must hold (rows k, in)");
        Require(!withInputGradient || a.InputGradient.Length >= (long)(a.InputShared != 0 ? a.Rows : rowMembers) * layer.Inputs,
            "batched dense backward: input gradient must hold its rows");
        if (BatchedAsProducts(a))
        {
            BatchedBackwardProducts(a, withInputGradient);
            return;
        }
        int parameterItems = (layer.WeightStride > 0 ? a.Members : 1) * layer.Outputs * layer.InputsPerGroup
            + (layer.BiasStride > 0 ? a.Members : 1) * layer.Outputs + (layer.HasOutputScale ? a.Members * layer.Outputs : 0);
        var shape = Plan.ShapeFor(parameterItems);
        (batchedParameterGradient ??= Accelerator.LoadStreamKernel<BatchedLayerArgs, int>(BatchedDense.SimpleParameterGradientKernel))(shape.Config, a, shape.BlockedFlag);
        if (!layer.HasInputScale && !withInputGradient)
            return;
        shape = Plan.ShapeFor(rowMembers * layer.Inputs);
        (batchedScaledInputGradient ??= Accelerator.LoadStreamKernel<BatchedLayerArgs, int>(BatchedDense.SimpleScaledInputGradientKernel))(shape.Config, a, shape.BlockedFlag);
        if (layer.HasInputScale)
        {
            shape = Plan.ShapeFor(a.Members * layer.Inputs);
            (batchedInputScaleGradient ??= Accelerator.LoadStreamKernel<BatchedLayerArgs, int>(BatchedDense.InputScaleGradientKernel))(shape.Config, a, shape.BlockedFlag);
        }
        if (!withInputGradient || !stored)
            return;
        shape = Plan.ShapeFor((a.InputShared != 0 ? a.Rows : rowMembers) * layer.Inputs);
        (batchedInputGradient ??= Accelerator.LoadStreamKernel<BatchedLayerArgs, int>(BatchedDense.InputGradientKernel))(shape.Config, a, shape.BlockedFlag);
    }
}
