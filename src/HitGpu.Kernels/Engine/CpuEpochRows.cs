// The CPU epoch's row passes: one thread's forward and backward pass of up to four rows at once (each weight
// row read once for four), member by member, and the one forward-and-loss routine that training, scoring and
// prediction share. The formulas are BatchedDense's (its reference is the proof); the layer comes from the
// uploaded LayerShapes; the activations, dropout mask and loss are the same device functions the layered
// kernels call.
//
// Scratch, per thread: rows of one row-member each, (row, member) at (q stride + i width) with stride =
// k width; a row-member's slots as LayerShape's offsets say (outputs, scaled inputs, pre-scale sums,
// pre-activations). The deltas (dL/d outputs) mirror the outputs in a second block of rows.
using System.Runtime.CompilerServices;

namespace HitGpu.Kernels;

/// <summary>What every CPU epoch kernel reads of the network's shape, filled from the layout by the launcher.</summary>
public struct EpochShape
{
    public int Layers, Members, ParameterCount;
    public int ActivationWidth;   // one row-member's activations (ParameterLayout.ActivationWidth)
    // scratch rows per thread (training: a thread's share of the batch; scoring and prediction: at least 2, for four rows at once)
    public int RowsPerThread;
}

/// <summary>Up to four dataset rows whose passes run together (the first <c>count</c> of them are used).</summary>
internal struct Rows4
{
    public int R0, R1, R2, R3;

    public readonly int this[int q] => q == 0 ? R0 : q == 1 ? R1 : q == 2 ? R2 : R3;
}

/// <summary>What one forward pass of every member over up to four rows leaves per row: its members' sums (<see cref="Loss.MemberLoss"/>).</summary>
internal struct MemberSums4
{
    public Loss.MemberLoss R0, R1, R2, R3;

    public readonly Loss.MemberLoss this[int q] => q == 0 ? R0 : q == 1 ? R1 : q == 2 ? R2 : R3;

    public void Set(int q, in Loss.MemberLoss row)
    {
        if (q == 0)
            R0 = row;
        else if (q == 1)
            R1 = row;
        else if (q == 2)
            R2 = row;
        else
            R3 = row;
    }
}

internal static class CpuEpochRows
{
    /// <summary>Rows whose passes run together (4; 1 runs every row alone).</summary>
    public const int AtOnce = 4;

    /// <summary>
    /// Every member's forward pass of <paramref name="count"/> (1 or 4) rows into the scratch rows at
    /// <paramref name="rowOut"/>, then each row's member sums. With <paramref name="labels"/> (0: none, prediction)
    /// each logit's loss against the target (the label, smoothed as the settings say) joins the sums; with a
    /// <paramref name="gradientScale"/> above 0 (training) dL/dz = (p - target) scale goes to the delta rows at
    /// <paramref name="deltaOut"/>. Hidden outputs take the dropout mask of (step, maskRow + q k + i).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe MemberSums4 ForwardMembers(in RowMemory mem, in EpochShape shape, in Rows4 rows, int count, int rowOut, long labels,
        in StepSettings settings, int step, int maskRow, SumOrder order, float gradientScale, int deltaOut)
    {
        int k = shape.Members, width = shape.ActivationWidth, stride = k * width;
        var sums = new MemberSums4();
        for (int i = 0; i < k; i++)
        {
            int logitAt = ForwardRows(mem, shape.Layers, rows, count, rowOut + i * width, stride, i, settings, step, maskRow + i, k, order);
            for (int q = 0; q < count; q++)
            {
                float z = mem.ScratchAt(rowOut + q * stride + i * width + logitAt);
                var row = sums[q];
                if (labels == 0)
                {
                    row.P += Activations.Sigmoid(z);
                    sums.Set(q, row);
                    continue;
                }
                float target = Loss.SmoothedTarget(((float*)labels)[rows[q]], settings.LabelSmoothing);
                if (gradientScale > 0f)
                    mem.ScratchAt(deltaOut + q * stride + i * width + logitAt) = Loss.LogitGradient(z, target) * gradientScale;
                if (i == 0)
                    row.AddFirst(k, z, target);
                else
                    row.Add(k, z, target);
                sums.Set(q, row);
            }
        }
        return sums;
    }

    /// <summary>scratch[to + j] = x[from + j] r[j] for j in [0, n): a layer's input times a member's input scale.</summary>
    private static void ScaleInput(in RowMemory mem, bool fromFeatures, int from, int to, int r, int n)
    {
        for (int j = 0; j < n; j++)
            mem.ScratchAt(to + j) = (fromFeatures ? mem.Feature(from + j) : mem.ScratchAt(from + j)) * mem.Parameter(r + j);
    }

    /// <summary>Where row q's input of a layer starts: its feature row (layer 0), else its scratch row's slot.</summary>
    private static int InputOf(bool fromFeatures, in Rows4 rows, int q, int inputs, int scratch, int stride) =>
        fromFeatures ? rows[q] * inputs : scratch + q * stride;

    /// <summary>
    /// Member <paramref name="member"/>'s forward pass of <paramref name="count"/> (1 or 4) input rows into the
    /// scratch rows at, at + stride, ...: each layer reads the input rows (layer 0) or the previous layer's
    /// outputs, four rows sharing each weight row's reads, each output summed in <paramref name="order"/>; hidden
    /// outputs of row q take the dropout mask of (step, maskRow + q maskStride). Returns where the logit sits
    /// in a scratch row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int ForwardRows(in RowMemory mem, int layers, in Rows4 rows, int count, int at, int stride, int member,
        in StepSettings settings, int step, int maskRow, int maskStride, SumOrder order)
    {
        var previous = mem.Layer(0);
        for (int l = 0; l < layers; l++)
        {
            var layer = mem.Layer(l);
            bool fromFeatures = l == 0;
            int scratch = at + previous.OutputOffset, n = layer.InputsPerGroup;
            if (layer.HasInputScale)
            {
                for (int q = 0; q < count; q++)
                    ScaleInput(mem, fromFeatures, InputOf(fromFeatures, rows, q, layer.Inputs, scratch, stride), at + q * stride + layer.ScaledInputOffset,
                        layer.InputScale(member), layer.Inputs);
                fromFeatures = false;
                scratch = at + layer.ScaledInputOffset;
            }
            int x0 = InputOf(fromFeatures, rows, 0, layer.Inputs, scratch, stride), x1 = InputOf(fromFeatures, rows, 1, layer.Inputs, scratch, stride);
            int x2 = InputOf(fromFeatures, rows, 2, layer.Inputs, scratch, stride), x3 = InputOf(fromFeatures, rows, 3, layer.Inputs, scratch, stride);
            // Per layer, not per output: LayerShape.FirstInput divides three times an output (dense layers start at 0).
            int outputsPerGroup = layer.OutputsPerGroup, weights = layer.Weight(member), biases = layer.Bias(member);
            for (int o = 0; o < layer.Outputs; o++)
            {
                int w = weights + o * n, first = outputsPerGroup == layer.Outputs ? 0 : o / outputsPerGroup * n;
                float bias = mem.Parameter(biases + o);
                float start = BatchedDense.SumStart(layer, bias, order);
                var sums = count == 4 ? mem.Dot4(start, fromFeatures, x0 + first, x1 + first, x2 + first, x3 + first, w, n)
                    : new Sums4 { S0 = order == SumOrder.FromBias ? mem.DotInOrder(start, fromFeatures, x0 + first, w, n)
                        : mem.Dot(fromFeatures, x0 + first, w, n) };
                float s = layer.HasOutputScale ? mem.Parameter(layer.OutputScale(member) + o) : 1f;
                for (int q = 0; q < count; q++)
                {
                    // Rate 0 (scoring): the factor is 1.
                    float keep = layer.DropsOutputs != 0 && settings.DropoutRate > 0f
                        ? Dropout.Factor(settings.DropoutSeed, step, maskRow + q * maskStride, l, o, settings.DropoutRate) : 1f;
                    BatchedDense.StoreOutput(new ScratchRow(mem, at + q * stride), layer, o, sums[q], bias, s, order, keep);
                }
            }
            previous = layer;
        }
        return previous.OutputOffset;
    }

    /// <summary>
    /// Member <paramref name="member"/>'s backward pass of <paramref name="count"/> (1 or 4) rows (BatchedDense's
    /// formulas): from dL/dz at the logits (in the delta rows at <paramref name="deltaAt"/>, stride apart) down
    /// the layers, adding every gradient of its tensors to this thread's gradient copy at
    /// <paramref name="gradients"/>, row by row in order (four rows' terms in one pass over each gradient row).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void BackwardRows(in RowMemory mem, int layers, in Rows4 rows, int count, int at, int deltaAt, int stride, int member,
        int gradients, in StepSettings settings, int step, int maskRow, int maskStride)
    {
        for (int l = layers - 1; l >= 0; l--)
        {
            var layer = mem.Layer(l);
            int nIn = layer.Inputs, n = layer.InputsPerGroup, w = layer.Weight(member);
            var previous = mem.Layer(l > 0 ? l - 1 : 0);
            int layerIn = previous.OutputOffset; // where this layer's input sits in a row's outputs (l > 0)
            bool hasR = layer.HasInputScale, inFeatures = l == 0;
            bool xwFeatures = inFeatures && !hasR, needG = l > 0 || hasR;
            int xwScratch = hasR ? at + layer.ScaledInputOffset : at + layerIn;     // what W multiplied: x, or x * r
            int g = hasR ? deltaAt + layer.ScaledInputOffset : deltaAt + layerIn;   // the gradient at it, row 0
            int xw0 = InputOf(xwFeatures, rows, 0, nIn, xwScratch, stride), xw1 = InputOf(xwFeatures, rows, 1, nIn, xwScratch, stride);
            int xw2 = InputOf(xwFeatures, rows, 2, nIn, xwScratch, stride), xw3 = InputOf(xwFeatures, rows, 3, nIn, xwScratch, stride);
            if (needG)
                for (int q = 0; q < count; q++)
                    for (int i = 0; i < nIn; i++)
                        mem.ScratchAt(g + q * stride + i) = 0f;
            for (int o = 0; o < layer.Outputs; o++)
            {
                int first = layer.FirstInput(o);
                var d = new Sums4();
                for (int q = 0; q < count; q++)
                {
                    float dq = mem.ScratchAt(deltaAt + q * stride + layer.OutputOffset + o);
                    mem.Gradient(gradients + layer.Bias(member) + o) += dq;
                    d.Set(q, dq);
                }
                if (layer.HasOutputScale)
                {
                    int s = layer.OutputScale(member) + o;
                    for (int q = 0; q < count; q++)
                        mem.Gradient(gradients + s) += d[q] * mem.ScratchAt(at + q * stride + layer.PreScaleOffset + o);
                    for (int q = 0; q < count; q++)
                        d.Set(q, d[q] * mem.Parameter(s));
                }
                if (count == 4)
                {
                    mem.AddScaledInput4(gradients + w + o * n, d, xwFeatures, xw0 + first, xw1 + first, xw2 + first, xw3 + first, n);
                    if (needG)
                        mem.AddScaledWeights4(g + first, stride, d, w + o * n, n);
                }
                else
                {
                    mem.AddScaledInput(gradients + w + o * n, d.S0, xwFeatures, xw0 + first, n);
                    if (needG)
                        mem.AddScaledWeights(g + first, d.S0, w + o * n, n);
                }
            }
            for (int q = 0; q < count; q++)
            {
                int row = at + q * stride, delta = deltaAt + q * stride;
                if (hasR)
                {
                    int r = layer.InputScale(member), x = InputOf(inFeatures, rows, q, nIn, row + layerIn, 0);
                    for (int i = 0; i < nIn; i++)
                    {
                        float gi = mem.ScratchAt(g + q * stride + i);
                        mem.Gradient(gradients + r + i) += gi * (inFeatures ? mem.Feature(x + i) : mem.ScratchAt(x + i));
                        if (l > 0)
                            mem.ScratchAt(delta + layerIn + i) = gi * mem.Parameter(r + i);
                    }
                }
                if (l > 0)
                    for (int i = 0; i < nIn; i++)
                        mem.ScratchAt(delta + layerIn + i) = mem.ScratchAt(delta + layerIn + i)
                            * Activations.Derivative(previous.Activation, mem.ScratchAt(row + layerIn + i),
                                previous.KeepsPreActivation ? mem.ScratchAt(row + previous.PreActivationOffset + i) : 0f)
                            * (previous.DropsOutputs != 0 ? Dropout.Factor(settings.DropoutSeed, step, maskRow + q * maskStride, l - 1, i,
                                settings.DropoutRate) : 1f);
            }
        }
    }

    /// <summary>
    /// Up to four rows from <paramref name="position"/>: four when that many remain before <paramref name="end"/>,
    /// else one; through the order at <paramref name="order"/> (0: rows in place, position p is row p).
    /// </summary>
    public static unsafe Rows4 NextRows(long order, int position, int end, out int count)
    {
        count = end - position >= AtOnce ? AtOnce : 1;
        if (order == 0)
            return new Rows4 { R0 = position, R1 = position + 1, R2 = position + 2, R3 = position + 3 };
        int* at = (int*)order;
        var rows = new Rows4 { R0 = at[position] };
        if (count == 4)
        {
            rows.R1 = at[position + 1];
            rows.R2 = at[position + 2];
            rows.R3 = at[position + 3];
        }
        return rows;
    }
}

/// <summary>The CPU epoch's row: a row-member's values in its scratch row (host memory), at the layer's offsets.</summary>
internal readonly unsafe struct ScratchRow(in RowMemory mem, int row) : IOutputRow
{
    // An address as a long, as RowMemory keeps its own (ILGPU builds its IR of the CPU's kernels too).
    private readonly long scratch = mem.Scratch;

    public void PreScale(in LayerShape layer, int o, float sum) => ((float*)scratch)[row + layer.PreScaleOffset + o] = sum;

    public void PreActivation(in LayerShape layer, int o, float z) => ((float*)scratch)[row + layer.PreActivationOffset + o] = z;

    public void Output(in LayerShape layer, int o, float y) => ((float*)scratch)[row + layer.OutputOffset + o] = y;
}
