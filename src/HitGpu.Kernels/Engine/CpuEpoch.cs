// The CPU epoch: a whole training epoch of the network (any ParameterLayout ending in one logit, binary
// cross-entropy, Adam) in ONE launch of one group. Made for ILGPU's CPU accelerator, where every launch costs
// ~100 us and a group barrier ~15 us but plain loops run at C# speed: instead of the layered path's 10-14
// launches per step it takes 2 barriers. It is not a GPU fused MLP: on a GPU it would run on one multiprocessor.
//
// Each step, thread t of T takes a contiguous slice of the batch's rows and runs forward, loss and backward
// for them alone (every ensemble member of each row, four rows at a time so each weight row is read once for
// four), into its own scratch and its own copy of the gradient (no sharing, no atomics). After a
// barrier each thread takes a slice of the parameters, sums the T gradient copies in thread order (fixed
// order: the same bits each run) and applies Adam. After a second barrier the next step reads the new
// parameters. Each step's learning rate and bias corrections come from a schedule the host fills.
//
// The reference: NetworkReference.Step and Adam.UpdateReference per batch (TrainReference below).
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace HitGpu.Kernels;

public struct CpuEpochArgs
{
    public ArrayView<float> Features;        // (n, layer 0's inputs) the network's inputs
    public ArrayView<float> Labels;          // (n) 0 or 1
    public ArrayView<int> Order;             // (n) this epoch's shuffled row order
    public ArrayView<float> SampleLoss;      // (n) per position in Order
    public ArrayView<float> SampleCorrect;   // (n)
    public ArrayView<float> Probabilities;   // (n) P(hit) per row: the predict kernel's output
    public ArrayView<float> Parameters;      // (count) laid out as the ParameterLayout says
    public ArrayView<float> AdamM, AdamV;    // (count)
    public ArrayView<float> ThreadGradients; // (threads, count) one gradient copy per thread
    public ArrayView<float> Scratch;         // (threads, 2 * rowsPerThread * members * activationWidth): outputs, then deltas
    public ArrayView<LayerShape> Layers;     // the ParameterLayout's shapes
    public ArrayView<AdamStep> Schedule;     // (steps) this epoch's Adam steps
    public int Rows, BatchSize, RowsPerThread;
    public int ParameterCount, ActivationWidth; // filled from the layout by the launcher (the width is one row-member's)
    public int Members;                         // likewise: k row-members per row, member-minor
    public StepSettings Settings;            // dropout on hidden outputs while training
    public int FirstStep;                    // the global step number of this epoch's first step, for the dropout mask
}

/// <summary>Four sums, one per row of a group of four.</summary>
public struct Sums4
{
    public float S0, S1, S2, S3;
}

/// <summary>
/// How the CPU epoch reaches its buffers. The algorithm is written once against this interface;
/// <see cref="ViewMemory"/> reads ILGPU array views (every backend), <see cref="PointerMemory"/> raw
/// pointers into CPU-accelerator buffers, where a view access costs ~2 ns and a pointer access ~0.3 ns.
/// </summary>
public interface IEpochMemory
{
    float Feature(int i);
    float Label(int i);
    int Order(int i);
    LayerShape Layer(int layer);
    AdamStep Schedule(int step);
    ref float SampleLoss(int i);
    ref float SampleCorrect(int i);
    ref float Probability(int i);
    ref float Parameter(int i);
    ref float M(int i);
    ref float V(int i);
    ref float Gradient(int i);
    ref float Scratch(int i);

    /// <summary>sum_i x[x + i] W[w + i], x from the features (fromFeatures) or the scratch, W the parameters.</summary>
    float Dot(bool fromFeatures, int x, int w, int n);

    /// <summary>start + x[x + 0] W[w + 0] + x[x + 1] W[w + 1] + ..., added in that order: the layered dense kernel's sum, to the bit.</summary>
    float DotInOrder(float start, bool fromFeatures, int x, int w, int n);


    /// <summary>gradient[g + i] += d * x[x + i] for i in [0, n), x as in <see cref="Dot"/>.</summary>
    void AddScaledInput(int g, float d, bool fromFeatures, int x, int n);

    /// <summary>scratch[s + i] += d * W[w + i] for i in [0, n).</summary>
    void AddScaledWeights(int s, float d, int w, int n);

    /// <summary>Four rows' sums start + x_q[x_q + 0] W[w + 0] + ..., each added in order (<see cref="DotInOrder"/> for four rows at once): one weight row read once for four rows.</summary>
    Sums4 Dot4(float start, bool fromFeatures, int x0, int x1, int x2, int x3, int w, int n);

    /// <summary>gradient[g + i] += d0 x0[i], then + d1 x1[i], + d2 x2[i], + d3 x3[i]: four rows' terms in row order, one load and store of the gradient.</summary>
    void AddScaledInput4(int g, in Sums4 d, bool fromFeatures, int x0, int x1, int x2, int x3, int n);

    /// <summary>scratch[s + q stride + i] += d_q W[w + i] for the four rows q: one weight row read once for four rows.</summary>
    void AddScaledWeights4(int s, int stride, in Sums4 d, int w, int n);
}

public readonly struct ViewMemory(CpuEpochArgs a) : IEpochMemory
{
    public float Feature(int i) => a.Features[i];
    public float Label(int i) => a.Labels[i];
    public int Order(int i) => a.Order[i];
    public LayerShape Layer(int layer) => a.Layers[layer];
    public AdamStep Schedule(int step) => a.Schedule[step];
    public ref float SampleLoss(int i) => ref a.SampleLoss[i];
    public ref float SampleCorrect(int i) => ref a.SampleCorrect[i];
    public ref float Probability(int i) => ref a.Probabilities[i];
    public ref float Parameter(int i) => ref a.Parameters[i];
    public ref float M(int i) => ref a.AdamM[i];
    public ref float V(int i) => ref a.AdamV[i];
    public ref float Gradient(int i) => ref a.ThreadGradients[i];
    public ref float Scratch(int i) => ref a.Scratch[i];

    // Four running sums: a single one waits on the previous add every term.
    public float Dot(bool fromFeatures, int x, int w, int n)
    {
        var source = fromFeatures ? a.Features : a.Scratch;
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
        int i = 0;
        for (; i + 3 < n; i += 4)
        {
            s0 += source[x + i] * a.Parameters[w + i];
            s1 += source[x + i + 1] * a.Parameters[w + i + 1];
            s2 += source[x + i + 2] * a.Parameters[w + i + 2];
            s3 += source[x + i + 3] * a.Parameters[w + i + 3];
        }
        for (; i < n; i++)
            s0 += source[x + i] * a.Parameters[w + i];
        return (s0 + s1) + (s2 + s3);
    }

    public float DotInOrder(float start, bool fromFeatures, int x, int w, int n)
    {
        var source = fromFeatures ? a.Features : a.Scratch;
        float sum = start;
        for (int i = 0; i < n; i++)
            sum += source[x + i] * a.Parameters[w + i];
        return sum;
    }

    public void AddScaledInput(int g, float d, bool fromFeatures, int x, int n)
    {
        var source = fromFeatures ? a.Features : a.Scratch;
        for (int i = 0; i < n; i++)
            a.ThreadGradients[g + i] += d * source[x + i];
    }

    public void AddScaledWeights(int s, float d, int w, int n)
    {
        for (int i = 0; i < n; i++)
            a.Scratch[s + i] += d * a.Parameters[w + i];
    }

    public Sums4 Dot4(float start, bool fromFeatures, int x0, int x1, int x2, int x3, int w, int n)
    {
        var source = fromFeatures ? a.Features : a.Scratch;
        var s = new Sums4 { S0 = start, S1 = start, S2 = start, S3 = start };
        for (int i = 0; i < n; i++)
        {
            float weight = a.Parameters[w + i];
            s.S0 += source[x0 + i] * weight;
            s.S1 += source[x1 + i] * weight;
            s.S2 += source[x2 + i] * weight;
            s.S3 += source[x3 + i] * weight;
        }
        return s;
    }

    public void AddScaledInput4(int g, in Sums4 d, bool fromFeatures, int x0, int x1, int x2, int x3, int n)
    {
        var source = fromFeatures ? a.Features : a.Scratch;
        for (int i = 0; i < n; i++)
            a.ThreadGradients[g + i] = a.ThreadGradients[g + i] + d.S0 * source[x0 + i] + d.S1 * source[x1 + i] + d.S2 * source[x2 + i] + d.S3 * source[x3 + i];
    }

    public void AddScaledWeights4(int s, int stride, in Sums4 d, int w, int n)
    {
        for (int i = 0; i < n; i++)
        {
            float weight = a.Parameters[w + i];
            a.Scratch[s + i] += d.S0 * weight;
            a.Scratch[s + stride + i] += d.S1 * weight;
            a.Scratch[s + 2 * stride + i] += d.S2 * weight;
            a.Scratch[s + 3 * stride + i] += d.S3 * weight;
        }
    }
}

/// <summary>The addresses of a <see cref="CpuEpochArgs"/>' CPU buffers, taken on the host (CPU accelerator only).</summary>
public struct EpochAddresses
{
    public long Features, Labels, Order, Layers, Schedule, SampleLoss, SampleCorrect, Probabilities, Parameters, M, V, Gradients, Scratch;
}

public readonly unsafe struct PointerMemory(EpochAddresses p) : IEpochMemory
{
    public float Feature(int i) => ((float*)p.Features)[i];
    public float Label(int i) => ((float*)p.Labels)[i];
    public int Order(int i) => ((int*)p.Order)[i];
    public LayerShape Layer(int layer) => ((LayerShape*)p.Layers)[layer];
    public AdamStep Schedule(int step) => ((AdamStep*)p.Schedule)[step];
    public ref float SampleLoss(int i) => ref ((float*)p.SampleLoss)[i];
    public ref float SampleCorrect(int i) => ref ((float*)p.SampleCorrect)[i];
    public ref float Probability(int i) => ref ((float*)p.Probabilities)[i];
    public ref float Parameter(int i) => ref ((float*)p.Parameters)[i];
    public ref float M(int i) => ref ((float*)p.M)[i];
    public ref float V(int i) => ref ((float*)p.V)[i];
    public ref float Gradient(int i) => ref ((float*)p.Gradients)[i];
    public ref float Scratch(int i) => ref ((float*)p.Scratch)[i];

    // Plain pointer loops, unrolled by four with independent sums. (System.Numerics.Vector would be faster
    // still, but ILGPU builds its IR of every kernel, the CPU's too, and rejects it.)
    public float Dot(bool fromFeatures, int x, int w, int n)
    {
        float* xs = (fromFeatures ? (float*)p.Features : (float*)p.Scratch) + x, ws = (float*)p.Parameters + w;
        float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
        int i = 0;
        for (; i + 3 < n; i += 4)
        {
            s0 += xs[i] * ws[i];
            s1 += xs[i + 1] * ws[i + 1];
            s2 += xs[i + 2] * ws[i + 2];
            s3 += xs[i + 3] * ws[i + 3];
        }
        for (; i < n; i++)
            s0 += xs[i] * ws[i];
        return (s0 + s1) + (s2 + s3);
    }

    public float DotInOrder(float start, bool fromFeatures, int x, int w, int n)
    {
        float* xs = (fromFeatures ? (float*)p.Features : (float*)p.Scratch) + x, ws = (float*)p.Parameters + w;
        float sum = start;
        for (int i = 0; i < n; i++)
            sum += xs[i] * ws[i];
        return sum;
    }

    public void AddScaledInput(int g, float d, bool fromFeatures, int x, int n) =>
        AddScaled((float*)p.Gradients + g, d, (fromFeatures ? (float*)p.Features : (float*)p.Scratch) + x, n);

    public void AddScaledWeights(int s, float d, int w, int n) => AddScaled((float*)p.Scratch + s, d, (float*)p.Parameters + w, n);

    public Sums4 Dot4(float start, bool fromFeatures, int x0, int x1, int x2, int x3, int w, int n)
    {
        float* source = fromFeatures ? (float*)p.Features : (float*)p.Scratch, ws = (float*)p.Parameters + w;
        float* a0 = source + x0, a1 = source + x1, a2 = source + x2, a3 = source + x3;
        float s0 = start, s1 = start, s2 = start, s3 = start;
        for (int i = 0; i < n; i++)
        {
            float weight = ws[i];
            s0 += a0[i] * weight;
            s1 += a1[i] * weight;
            s2 += a2[i] * weight;
            s3 += a3[i] * weight;
        }
        return new Sums4 { S0 = s0, S1 = s1, S2 = s2, S3 = s3 };
    }

    public void AddScaledInput4(int g, in Sums4 d, bool fromFeatures, int x0, int x1, int x2, int x3, int n)
    {
        float* source = fromFeatures ? (float*)p.Features : (float*)p.Scratch, target = (float*)p.Gradients + g;
        float* a0 = source + x0, a1 = source + x1, a2 = source + x2, a3 = source + x3;
        float d0 = d.S0, d1 = d.S1, d2 = d.S2, d3 = d.S3;
        for (int i = 0; i < n; i++)
            target[i] = target[i] + d0 * a0[i] + d1 * a1[i] + d2 * a2[i] + d3 * a3[i];
    }

    public void AddScaledWeights4(int s, int stride, in Sums4 d, int w, int n)
    {
        float* t0 = (float*)p.Scratch + s, t1 = t0 + stride, t2 = t1 + stride, t3 = t2 + stride, ws = (float*)p.Parameters + w;
        float d0 = d.S0, d1 = d.S1, d2 = d.S2, d3 = d.S3;
        for (int i = 0; i < n; i++)
        {
            float weight = ws[i];
            t0[i] += d0 * weight;
            t1[i] += d1 * weight;
            t2[i] += d2 * weight;
            t3[i] += d3 * weight;
        }
    }

    private static void AddScaled(float* target, float d, float* source, int n)
    {
        int i = 0;
        for (; i + 3 < n; i += 4)
        {
            float t0 = target[i] + d * source[i], t1 = target[i + 1] + d * source[i + 1];
            float t2 = target[i + 2] + d * source[i + 2], t3 = target[i + 3] + d * source[i + 3];
            target[i] = t0;
            target[i + 1] = t1;
            target[i + 2] = t2;
            target[i + 3] = t3;
        }
        for (; i < n; i++)
            target[i] += d * source[i];
    }
}

public static class CpuEpoch
{
    /// <summary>The kernel for every backend: buffers through array views.</summary>
    public static void TrainKernel(CpuEpochArgs a) => Train(new ViewMemory(a), a);

    /// <summary>
    /// The same epoch for the CPU accelerator only, through raw pointers (4-5x faster there). Kept out of
    /// the GPU compile tests (by its <see cref="EpochAddresses"/> parameter): GPU memory has no host address.
    /// </summary>
    public static void TrainPointerKernel(CpuEpochArgs a, EpochAddresses addresses) => Train(new PointerMemory(addresses), a);

    /// <summary>Every backend: each row's loss and correctness with the current parameters (no training).</summary>
    public static void ScoreKernel(CpuEpochArgs a) => Score(new ViewMemory(a), a);

    /// <summary>The same for the CPU accelerator, through raw pointers.</summary>
    public static void ScorePointerKernel(CpuEpochArgs a, EpochAddresses addresses) => Score(new PointerMemory(addresses), a);

    /// <summary>
    /// Every backend: P(hit) of rows [0, Rows) with the current parameters, each output summed as the layered
    /// dense kernel sums it (bias first, then the inputs in order), so the probabilities are the layered path's
    /// to the bit: prediction gives the same numbers on either path.
    /// </summary>
    public static void PredictKernel(CpuEpochArgs a) => Predict(new ViewMemory(a), a);

    /// <summary>The same for the CPU accelerator, through raw pointers.</summary>
    public static void PredictPointerKernel(CpuEpochArgs a, EpochAddresses addresses) => Predict(new PointerMemory(addresses), a);

    // Rows four at a time (four independent sums hide the adds' latency), the rest one at a time; each row's
    // sums are added in the same order either way. Member by member; a row's P(hit) is their mean.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Predict<TMemory>(TMemory mem, CpuEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int layers = (int)a.Layers.Length, k = a.Members, width = a.ActivationWidth;
        int rowOut = thread * 2 * a.RowsPerThread * k * width; // four rows per member: RowsPerThread >= 2
        int perThread = (a.Rows + threads - 1) / threads;
        int row = thread * perThread, end = Math.Min(a.Rows, (thread + 1) * perThread);
        var noDropout = new StepSettings();
        while (row < end)
        {
            int count = row + 3 < end ? 4 : 1;
            var rows = new Rows4 { R0 = row, R1 = row + 1, R2 = row + 2, R3 = row + 3 };
            float p0 = 0f, p1 = 0f, p2 = 0f, p3 = 0f;
            for (int i = 0; i < k; i++)
            {
                int at = rowOut + i * 4 * width; // member i's rows, width apart
                int logit = at + ForwardRows(mem, layers, rows, count, at, width, i, noDropout, 0, 0, 0, likeLayered: true);
                p0 += Activations.Sigmoid(mem.Scratch(logit));
                if (count == 4)
                {
                    p1 += Activations.Sigmoid(mem.Scratch(logit + width));
                    p2 += Activations.Sigmoid(mem.Scratch(logit + 2 * width));
                    p3 += Activations.Sigmoid(mem.Scratch(logit + 3 * width));
                }
            }
            mem.Probability(row) = p0 / k;
            if (count == 4)
            {
                mem.Probability(row + 1) = p1 / k;
                mem.Probability(row + 2) = p2 / k;
                mem.Probability(row + 3) = p3 / k;
            }
            row += count;
        }
    }

    /// <summary>scratch[to + j] = x[from + j] r[j] for j in [0, n): a layer's input times a member's input scale.</summary>
    private static void ScaleInput<TMemory>(TMemory mem, bool fromFeatures, int from, int to, int r, int n) where TMemory : struct, IEpochMemory
    {
        for (int j = 0; j < n; j++)
            mem.Scratch(to + j) = (fromFeatures ? mem.Feature(from + j) : mem.Scratch(from + j)) * mem.Parameter(r + j);
    }

    /// <summary>Up to four dataset rows whose passes run together (the first <c>count</c> of them are used).</summary>
    private struct Rows4
    {
        public int R0, R1, R2, R3;
    }

    private static int RowOf(in Rows4 rows, int q) => q == 0 ? rows.R0 : q == 1 ? rows.R1 : q == 2 ? rows.R2 : rows.R3;

    private static float Pick(in Sums4 s, int q) => q == 0 ? s.S0 : q == 1 ? s.S1 : q == 2 ? s.S2 : s.S3;

    private static void Put(ref Sums4 s, int q, float value)
    {
        if (q == 0) s.S0 = value;
        else if (q == 1) s.S1 = value;
        else if (q == 2) s.S2 = value;
        else s.S3 = value;
    }

    /// <summary>Where row q's input of a layer starts: its feature row (layer 0), else its scratch row's slot.</summary>
    private static int InputOf(bool fromFeatures, in Rows4 rows, int q, int inputs, int scratch, int stride) =>
        fromFeatures ? RowOf(rows, q) * inputs : scratch + q * stride;

    /// <summary>
    /// Member <paramref name="member"/>'s forward pass of <paramref name="count"/> (1 or 4) input rows into the
    /// scratch rows at, at + stride, ...: each layer reads the input rows (layer 0) or the previous layer's
    /// outputs, four rows sharing each weight row's reads; hidden outputs of row q take the dropout mask of
    /// (step, maskRow + q maskStride). With <paramref name="likeLayered"/> each output is summed as the layered
    /// kernel sums it (BatchedDense.PreActivation: the bias first, then the inputs in order), so prediction gives
    /// the layered path's bits; training adds the bias after the sum (and sums a lone row in four running parts).
    /// Returns where the logit sits in a scratch row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int ForwardRows<TMemory>(TMemory mem, int layers, in Rows4 rows, int count, int at, int stride, int member,
        in StepSettings settings, int step, int maskRow, int maskStride, bool likeLayered = false) where TMemory : struct, IEpochMemory
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
            for (int o = 0; o < layer.Outputs; o++)
            {
                int w = layer.Weight(member) + o * n, first = layer.FirstInput(o);
                float bias = mem.Parameter(layer.Bias(member) + o);
                bool biasFirst = likeLayered && !layer.HasOutputScale;
                float start = biasFirst ? bias : 0f;
                var sums = count == 4 ? mem.Dot4(start, fromFeatures, x0 + first, x1 + first, x2 + first, x3 + first, w, n)
                    : new Sums4 { S0 = likeLayered ? mem.DotInOrder(start, fromFeatures, x0 + first, w, n) : mem.Dot(fromFeatures, x0 + first, w, n) };
                for (int q = 0; q < count; q++)
                {
                    float sum = Pick(sums, q);
                    int row = at + q * stride;
                    if (layer.HasOutputScale)
                    {
                        mem.Scratch(row + layer.PreScaleOffset + o) = sum;
                        sum = sum * mem.Parameter(layer.OutputScale(member) + o) + bias;
                    }
                    else if (!biasFirst)
                    {
                        sum += bias;
                    }
                    if (layer.KeepsPreActivation)
                        mem.Scratch(row + layer.PreActivationOffset + o) = sum;
                    float y = Activations.Apply(layer.Activation, sum);
                    if (layer.DropsOutputs != 0)
                        y *= Dropout.Factor(settings.DropoutSeed, step, maskRow + q * maskStride, l, o, settings.DropoutRate);
                    mem.Scratch(row + layer.OutputOffset + o) = y;
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
    private static void BackwardRows<TMemory>(TMemory mem, int layers, in Rows4 rows, int count, int at, int deltaAt, int stride, int member,
        int gradients, in StepSettings settings, int step, int maskRow, int maskStride) where TMemory : struct, IEpochMemory
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
                        mem.Scratch(g + q * stride + i) = 0f;
            for (int o = 0; o < layer.Outputs; o++)
            {
                int first = layer.FirstInput(o);
                var d = new Sums4();
                for (int q = 0; q < count; q++)
                {
                    float dq = mem.Scratch(deltaAt + q * stride + layer.OutputOffset + o);
                    mem.Gradient(gradients + layer.Bias(member) + o) += dq;
                    Put(ref d, q, dq);
                }
                if (layer.HasOutputScale)
                {
                    int s = layer.OutputScale(member) + o;
                    for (int q = 0; q < count; q++)
                        mem.Gradient(gradients + s) += Pick(d, q) * mem.Scratch(at + q * stride + layer.PreScaleOffset + o);
                    for (int q = 0; q < count; q++)
                        Put(ref d, q, Pick(d, q) * mem.Parameter(s));
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
                        float gi = mem.Scratch(g + q * stride + i);
                        mem.Gradient(gradients + r + i) += gi * (inFeatures ? mem.Feature(x + i) : mem.Scratch(x + i));
                        if (l > 0)
                            mem.Scratch(delta + layerIn + i) = gi * mem.Parameter(r + i);
                    }
                }
                if (l > 0)
                    for (int i = 0; i < nIn; i++)
                        mem.Scratch(delta + layerIn + i) = mem.Scratch(delta + layerIn + i)
                            * Activations.Derivative(previous.Activation, mem.Scratch(row + layerIn + i),
                                previous.KeepsPreActivation ? mem.Scratch(row + previous.PreActivationOffset + i) : 0f)
                            * (previous.DropsOutputs != 0 ? Dropout.Factor(settings.DropoutSeed, step, maskRow + q * maskStride, l - 1, i, settings.DropoutRate) : 1f);
            }
        }
    }

    /// <summary>Up to four rows of the order from <paramref name="position"/>: four when that many remain before <paramref name="end"/>, else one.</summary>
    private static Rows4 NextRows<TMemory>(TMemory mem, int position, int end, out int count) where TMemory : struct, IEpochMemory
    {
        count = end - position >= RowsAtOnce ? RowsAtOnce : 1;
        var rows = new Rows4 { R0 = mem.Order(position) };
        if (count == 4)
        {
            rows.R1 = mem.Order(position + 1);
            rows.R2 = mem.Order(position + 2);
            rows.R3 = mem.Order(position + 3);
        }
        return rows;
    }

    /// <summary>Rows whose passes run together (4; 1 runs every row alone).</summary>
    private const int RowsAtOnce = 4;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Score<TMemory>(TMemory mem, CpuEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int layers = (int)a.Layers.Length, k = a.Members, width = a.ActivationWidth, stride = k * width;
        int rowOut = thread * 2 * a.RowsPerThread * k * width; // room for four rows: RowsPerThread >= 2
        int perThread = (a.Rows + threads - 1) / threads;
        int end = Math.Min(a.Rows, (thread + 1) * perThread);
        var noDropout = new StepSettings();
        for (int position = thread * perThread; position < end;)
        {
            var rows = NextRows(mem, position, end, out int count);
            Sums4 first = default, lossSum = default, pSum = default, qSum = default;
            for (int i = 0; i < k; i++)
            {
                int at = rowOut + i * width;
                int logit = ForwardRows(mem, layers, rows, count, at, stride, i, noDropout, 0, 0, 0);
                for (int q = 0; q < count; q++)
                    Accumulate(k, i, q, mem.Scratch(at + q * stride + logit), mem.Label(RowOf(rows, q)), ref first, ref lossSum, ref pSum, ref qSum);
            }
            for (int q = 0; q < count; q++)
            {
                float y = mem.Label(RowOf(rows, q));
                mem.SampleLoss(position + q) = Loss.EnsembleLoss(k, Pick(first, q), Pick(lossSum, q), Pick(pSum, q), Pick(qSum, q), y, lossOfMean: 1);
                mem.SampleCorrect(position + q) = Loss.EnsembleCorrect(k, Pick(first, q), Pick(pSum, q), y);
            }
            position += count;
        }
    }

    /// <summary>Member i's logit of row q into the row's sums (<see cref="Loss.EnsembleLoss"/>): only the first logit when there is one member.</summary>
    private static void Accumulate(int k, int i, int q, float z, float y, ref Sums4 first, ref Sums4 lossSum, ref Sums4 pSum, ref Sums4 qSum)
    {
        if (i == 0)
            Put(ref first, q, z);
        if (k > 1)
        {
            float loss = Pick(lossSum, q), p = Pick(pSum, q), notP = Pick(qSum, q);
            Loss.AddMember(z, y, ref loss, ref p, ref notP);
            Put(ref lossSum, q, loss);
            Put(ref pSum, q, p);
            Put(ref qSum, q, notP);
        }
    }

    // The body is a method of its own, not the kernel entry: the JIT compiles ILGPU's CPU kernel entry
    // methods without full optimisation, while the methods they call get it (measured: 4x on a dot product).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Train<TMemory>(TMemory mem, CpuEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int layers = (int)a.Layers.Length, k = a.Members, width = a.ActivationWidth, stride = k * width;
        int steps = (a.Rows + a.BatchSize - 1) / a.BatchSize;
        int gradientBase = thread * a.ParameterCount;
        int outputsBase = thread * 2 * a.RowsPerThread * k * width;
        int deltasBase = outputsBase + a.RowsPerThread * k * width;

        for (int step = 0; step < steps; step++)
        {
            int batchStart = step * a.BatchSize;
            int batchRows = Math.Min(a.BatchSize, a.Rows - batchStart);
            int perThread = (batchRows + threads - 1) / threads;
            int myStart = Math.Min(batchRows, thread * perThread);
            int myRows = Math.Min(batchRows, myStart + perThread) - myStart;
            float scale = 1f / (batchRows * k); // the loss: a mean over the batch and the members
            int globalStep = a.FirstStep + step;

            for (int p = 0; p < a.ParameterCount; p++)
                mem.Gradient(gradientBase + p) = 0f;

            for (int r = 0; r < myRows;)
            {
                int position = batchStart + myStart + r;
                var rows = NextRows(mem, position, batchStart + myStart + myRows, out int count);
                int rowOut = outputsBase + r * stride, rowDelta = deltasBase + r * stride, maskRow = (myStart + r) * k;

                // Forward and loss for every member (sigmoid fused with binary cross-entropy; dL/dz = (p - y) / (batch k)),
                // then each member's backward pass, the forward reversed.
                Sums4 first = default, lossSum = default, pSum = default, qSum = default;
                for (int i = 0; i < k; i++)
                {
                    int logitAt = ForwardRows(mem, layers, rows, count, rowOut + i * width, stride, i, a.Settings, globalStep, maskRow + i, k);
                    for (int q = 0; q < count; q++)
                    {
                        float z = mem.Scratch(rowOut + q * stride + i * width + logitAt);
                        float target = Loss.SmoothedTarget(mem.Label(RowOf(rows, q)), a.Settings.LabelSmoothing);
                        mem.Scratch(rowDelta + q * stride + i * width + logitAt) = Loss.LogitGradient(z, target) * scale;
                        Accumulate(k, i, q, z, target, ref first, ref lossSum, ref pSum, ref qSum);
                    }
                }
                for (int q = 0; q < count; q++)
                {
                    float y = mem.Label(RowOf(rows, q)), target = Loss.SmoothedTarget(y, a.Settings.LabelSmoothing);
                    mem.SampleLoss(position + q) = Loss.EnsembleLoss(k, Pick(first, q), Pick(lossSum, q), Pick(pSum, q), Pick(qSum, q), target, lossOfMean: 0);
                    mem.SampleCorrect(position + q) = Loss.EnsembleCorrect(k, Pick(first, q), Pick(pSum, q), y);
                }
                for (int i = 0; i < k; i++)
                    BackwardRows(mem, layers, rows, count, rowOut + i * width, rowDelta + i * width, stride, i, gradientBase, a.Settings, globalStep, maskRow + i, k);
                r += count;
            }
            Group.Barrier();

            // Adam over this thread's slice of the parameters, the T gradient copies summed in thread order.
            var s = mem.Schedule(step);
            int perThreadParameters = (a.ParameterCount + threads - 1) / threads;
            int pStart = thread * perThreadParameters, pEnd = Math.Min(a.ParameterCount, pStart + perThreadParameters);
            for (int p = pStart; p < pEnd; p++)
            {
                float gradient = 0f;
                for (int t = 0; t < threads; t++)
                    gradient += mem.Gradient(t * a.ParameterCount + p);
                float m = mem.M(p), v = mem.V(p);
                mem.Parameter(p) = Adam.UpdateOne(ref m, ref v, mem.Parameter(p), gradient, s);
                mem.M(p) = m;
                mem.V(p) = v;
            }
            Group.Barrier();
        }
    }

    // ---- reference: the same epoch, one reference step (NetworkReference) and one Adam reference per batch ----

    /// <summary>
    /// One epoch in plain C#: for each batch of <paramref name="order"/>, the reference step (forward, loss,
    /// backward) and one Adam step of <paramref name="schedule"/>. Updates the parameters and moments in place
    /// and writes each sample's loss and correctness at its position in the order.
    /// </summary>
    public static void TrainReference(ParameterLayout layout, ReadOnlySpan<float> features, ReadOnlySpan<float> labels,
        ReadOnlySpan<int> order, int batchSize, ReadOnlySpan<AdamStep> schedule, Span<float> parameters, Span<float> m, Span<float> v,
        Span<float> sampleLoss, Span<float> sampleCorrect, in StepSettings settings, int firstStep)
    {
        int inputs = layout.Inputs(0), rows = order.Length;
        var gradient = new float[parameters.Length];
        for (int step = 0, start = 0; start < rows; step++, start += batchSize)
        {
            int batch = Math.Min(batchSize, rows - start);
            var x = new float[batch * inputs];
            var y = new float[batch];
            for (int r = 0; r < batch; r++)
            {
                features.Slice(order[start + r] * inputs, inputs).CopyTo(x.AsSpan(r * inputs));
                y[r] = labels[order[start + r]];
            }
            NetworkReference.Step<float>(layout, parameters, x, y, batch, gradient, settings, firstStep + step,
                sampleLoss.Slice(start, batch), sampleCorrect.Slice(start, batch));
            Adam.UpdateReference(parameters, gradient, m, v, schedule[step]);
        }
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, CpuEpochArgs>? cpuEpoch, cpuEpochScore, cpuEpochPredict;
    private Action<KernelConfig, CpuEpochArgs, EpochAddresses>? cpuEpochPointers, cpuEpochScorePointers, cpuEpochPredictPointers;

    /// <summary>
    /// Launches one CPU epoch kernel in one group: on the CPU accelerator its raw-pointer entry unless
    /// <paramref name="throughViews"/> asks for the every-backend one (the tests run both), elsewhere the latter.
    /// Each entry is loaded on its first use.
    /// </summary>
    private void LaunchCpuEpoch(in CpuEpochArgs a, bool throughViews,
        ref Action<KernelConfig, CpuEpochArgs>? views, Action<CpuEpochArgs> viewKernel,
        ref Action<KernelConfig, CpuEpochArgs, EpochAddresses>? pointers, Action<CpuEpochArgs, EpochAddresses> pointerKernel)
    {
        FinishPreparation();
        var config = new KernelConfig(1, CpuEpochThreads);
        if (Kind != AcceleratorKind.Cpu || throughViews)
            (views ??= Accelerator.LoadStreamKernel(viewKernel))(config, a);
        else
            (pointers ??= Accelerator.LoadStreamKernel(pointerKernel))(config, a, Addresses(a));
    }

    private Task? preparation;

    /// <summary>
    /// On the CPU accelerator, starts loading the CPU epoch's kernels on a worker thread, so that ILGPU's
    /// one-time start (~0.2 s, most of it the JIT compiling ILGPU itself) overlaps the host's reading and
    /// preparing of the data; the device waits for it before its first use (<see cref="FinishPreparation"/>).
    /// Elsewhere it does nothing.
    /// </summary>
    public void PrepareCpuEpoch()
    {
        if (Kind != AcceleratorKind.Cpu || preparation is not null)
            return;
        preparation = Task.Run(() =>
        {
            cpuEpochPointers = Accelerator.LoadStreamKernel<CpuEpochArgs, EpochAddresses>(CpuEpoch.TrainPointerKernel);
            cpuEpochScorePointers = Accelerator.LoadStreamKernel<CpuEpochArgs, EpochAddresses>(CpuEpoch.ScorePointerKernel);
            cpuEpochPredictPointers = Accelerator.LoadStreamKernel<CpuEpochArgs, EpochAddresses>(CpuEpoch.PredictPointerKernel);
        });
    }

    /// <summary>Waits for <see cref="PrepareCpuEpoch"/>'s work, if any: call before the device is used from this thread.</summary>
    public void FinishPreparation()
    {
        var pending = preparation;
        if (pending is null)
            return;
        pending.GetAwaiter().GetResult();
        preparation = null;
    }

    /// <summary>Threads of the one group the CPU epoch kernels run in.</summary>
    public int CpuEpochThreads => Kind == AcceleratorKind.Cpu ? Accelerator.MaxNumThreadsPerGroup : Math.Min(256, Accelerator.MaxNumThreadsPerGroup);

    /// <summary>Loss and correctness of rows [0, Rows) in Order with the current parameters, in one launch; Schedule and gradients unused.</summary>
    public void ScoreCpuEpoch(CpuEpochArgs a, ParameterLayout layout, bool throughViews = false)
    {
        Check(ref a, layout, "CPU epoch score");
        Require(a.Rows >= 1 && a.Order.Length >= a.Rows && a.SampleLoss.Length >= a.Rows && a.SampleCorrect.Length >= a.Rows,
            "CPU epoch score: order and per-sample outputs must hold the rows");
        Require(a.Scratch.Length >= (long)CpuEpochThreads * 2 * a.RowsPerThread * a.Members * a.ActivationWidth && a.RowsPerThread >= 2, "CPU epoch score: scratch too small (four rows a thread)");
        LaunchCpuEpoch(a, throughViews, ref cpuEpochScore, CpuEpoch.ScoreKernel, ref cpuEpochScorePointers, CpuEpoch.ScorePointerKernel);
    }

    /// <summary>P(hit) of rows [0, Rows) into Probabilities, in one launch; labels, order, schedule and gradients unused.</summary>
    public void PredictCpuEpoch(CpuEpochArgs a, ParameterLayout layout, bool throughViews = false)
    {
        Check(ref a, layout, "CPU epoch predict");
        Require(a.Rows >= 1 && a.Probabilities.Length >= a.Rows, "CPU epoch predict: the probabilities must hold the rows");
        Require(a.Scratch.Length >= (long)CpuEpochThreads * 2 * a.RowsPerThread * a.Members * a.ActivationWidth && a.RowsPerThread >= 2, "CPU epoch predict: scratch too small (four rows a thread)");
        LaunchCpuEpoch(a, throughViews, ref cpuEpochPredict, CpuEpoch.PredictKernel, ref cpuEpochPredictPointers, CpuEpoch.PredictPointerKernel);
    }

    /// <summary>
    /// One epoch in one launch. On the CPU accelerator through raw pointers unless <paramref name="throughViews"/>
    /// asks for the every-backend entry (the tests run both against the reference).
    /// </summary>
    public void TrainCpuEpoch(CpuEpochArgs a, ParameterLayout layout, bool throughViews = false)
    {
        Check(ref a, layout, "CPU epoch");
        int threads = CpuEpochThreads;
        int steps = (a.Rows + a.BatchSize - 1) / a.BatchSize;
        Require(a.Labels.Length >= a.Rows && a.Order.Length >= a.Rows, "CPU epoch: labels and order shorter than the rows");
        Require(a.SampleLoss.Length >= a.Rows && a.SampleCorrect.Length >= a.Rows, "CPU epoch: per-sample outputs shorter than the rows");
        Require(a.AdamM.Length == a.ParameterCount && a.AdamV.Length == a.ParameterCount, "CPU epoch: moments must have the parameter count");
        Require(a.ThreadGradients.Length >= (long)threads * a.ParameterCount, $"CPU epoch: need {threads} gradient copies");
        Require(a.RowsPerThread >= (Math.Min(a.BatchSize, a.Rows) + threads - 1) / threads, "CPU epoch: scratch rows per thread too few for the batch");
        Require(a.Scratch.Length >= (long)threads * 2 * a.RowsPerThread * a.Members * a.ActivationWidth, "CPU epoch: scratch too small");
        Require(a.Schedule.Length >= steps, $"CPU epoch: the schedule needs {steps} steps");
        LaunchCpuEpoch(a, throughViews, ref cpuEpoch, CpuEpoch.TrainKernel, ref cpuEpochPointers, CpuEpoch.TrainPointerKernel);
    }

    /// <summary>The layout's sizes into the arguments, and the buffers checked against it.</summary>
    private static void Check(ref CpuEpochArgs a, ParameterLayout layout, string what)
    {
        a.ParameterCount = layout.Count;
        a.ActivationWidth = layout.ActivationWidth;
        a.Members = layout.Members;
        Require(a.Layers.Length == layout.Layers, $"{what}: the device layer shapes must hold the layout's {layout.Layers} layers");
        Require(layout.Outputs(layout.Layers - 1) == 1 && layout.ActivationOf(layout.Layers - 1) == Activation.Identity,
            $"{what}: the last layer must be one logit (no activation: the loss applies the sigmoid)");
        Require(a.Features.Length % layout.Inputs(0) == 0 && a.Features.Length / layout.Inputs(0) >= a.Rows,
            $"{what}: features must be (rows, {layout.Inputs(0)})");
        Require(a.Parameters.Length == layout.Count, $"{what}: parameters must have the layout's {layout.Count} values");
    }

    private static EpochAddresses Addresses(in CpuEpochArgs a) => new()
    {
        Features = Address(a.Features), Labels = Address(a.Labels), Order = Address(a.Order), Layers = Address(a.Layers),
        Schedule = Address(a.Schedule), SampleLoss = Address(a.SampleLoss), SampleCorrect = Address(a.SampleCorrect), Probabilities = Address(a.Probabilities),
        Parameters = Address(a.Parameters), M = Address(a.AdamM), V = Address(a.AdamV),
        Gradients = Address(a.ThreadGradients), Scratch = Address(a.Scratch),
    };

    private static long Address<T>(ArrayView<T> view) where T : unmanaged => view.LoadEffectiveAddressAsPtr().ToInt64();
}
