// The CPU epoch: a whole training epoch of the network (any ParameterLayout ending in one logit, binary
// cross-entropy, Adam) in ONE launch of one group. Made for ILGPU's CPU accelerator, where every launch costs
// ~100 us and a group barrier ~15 us but plain loops run at C# speed: instead of the layered path's 10-14
// launches per step it takes 2 barriers. It is not a GPU fused MLP: on a GPU it would run on one multiprocessor.
//
// Each step, thread t of T takes a contiguous slice of the batch's rows and runs forward, loss and backward
// for them alone, into its own scratch and its own copy of the gradient (no sharing, no atomics). After a
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

    /// <summary><see cref="DotInOrder"/> for four rows at once, at x, x + stride, x + 2 stride, x + 3 stride: four independent sums.</summary>
    Sums4 DotInOrder4(float start, bool fromFeatures, int x, int stride, int w, int n);

    /// <summary>gradient[g + i] += d * x[x + i] for i in [0, n), x as in <see cref="Dot"/>.</summary>
    void AddScaledInput(int g, float d, bool fromFeatures, int x, int n);

    /// <summary>scratch[s + i] += d * W[w + i] for i in [0, n).</summary>
    void AddScaledWeights(int s, float d, int w, int n);
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

    public Sums4 DotInOrder4(float start, bool fromFeatures, int x, int stride, int w, int n)
    {
        var source = fromFeatures ? a.Features : a.Scratch;
        var s = new Sums4 { S0 = start, S1 = start, S2 = start, S3 = start };
        for (int i = 0; i < n; i++)
        {
            float weight = a.Parameters[w + i];
            s.S0 += source[x + i] * weight;
            s.S1 += source[x + stride + i] * weight;
            s.S2 += source[x + 2 * stride + i] * weight;
            s.S3 += source[x + 3 * stride + i] * weight;
        }
        return s;
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

    public Sums4 DotInOrder4(float start, bool fromFeatures, int x, int stride, int w, int n)
    {
        float* x0 = (fromFeatures ? (float*)p.Features : (float*)p.Scratch) + x, ws = (float*)p.Parameters + w;
        float* x1 = x0 + stride, x2 = x1 + stride, x3 = x2 + stride;
        float s0 = start, s1 = start, s2 = start, s3 = start;
        for (int i = 0; i < n; i++)
        {
            float weight = ws[i];
            s0 += x0[i] * weight;
            s1 += x1[i] * weight;
            s2 += x2[i] * weight;
            s3 += x3[i] * weight;
        }
        return new Sums4 { S0 = s0, S1 = s1, S2 = s2, S3 = s3 };
    }

    public void AddScaledInput(int g, float d, bool fromFeatures, int x, int n) =>
        AddScaled((float*)p.Gradients + g, d, (fromFeatures ? (float*)p.Features : (float*)p.Scratch) + x, n);

    public void AddScaledWeights(int s, float d, int w, int n) => AddScaled((float*)p.Scratch + s, d, (float*)p.Parameters + w, n);

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
        while (row < end)
        {
            int count = row + 3 < end ? 4 : 1;
            float p0 = 0f, p1 = 0f, p2 = 0f, p3 = 0f;
            for (int i = 0; i < k; i++)
            {
                int at = rowOut + i * 4 * width; // member i's rows, width apart
                int logit = at + ForwardInOrder(mem, layers, row, count, at, width, i);
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

    /// <summary>
    /// Member <paramref name="member"/>'s forward pass of <paramref name="count"/> (1 or 4) consecutive input
    /// rows into scratch rows at, at + width, ..., each output summed as the layered kernel sums it
    /// (BatchedDense.PreActivation). Returns where the logit sits in a scratch row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int ForwardInOrder<TMemory>(TMemory mem, int layers, int row, int count, int at, int width, int member)
        where TMemory : struct, IEpochMemory
    {
        var previous = mem.Layer(0);
        for (int l = 0; l < layers; l++)
        {
            var layer = mem.Layer(l);
            bool fromFeatures = l == 0;
            int x = l == 0 ? row * layer.Inputs : at + previous.OutputOffset, stride = l == 0 ? layer.Inputs : width;
            if (layer.HasInputScale)
            {
                for (int q = 0; q < count; q++)
                    ScaleInput(mem, fromFeatures, x + q * stride, at + q * width + layer.ScaledInputOffset, layer.InputScale(member), layer.Inputs);
                fromFeatures = false;
                x = at + layer.ScaledInputOffset;
                stride = width;
            }
            for (int o = 0; o < layer.Outputs; o++)
            {
                int n = layer.InputsPerGroup, wRow = layer.Weight(member) + o * n, xo = x + layer.FirstInput(o);
                float bias = mem.Parameter(layer.Bias(member) + o), start = layer.HasOutputScale ? 0f : bias;
                var s = count == 4 ? mem.DotInOrder4(start, fromFeatures, xo, stride, wRow, n)
                    : new Sums4 { S0 = mem.DotInOrder(start, fromFeatures, xo, wRow, n) };
                if (layer.HasOutputScale)
                {
                    float scale = mem.Parameter(layer.OutputScale(member) + o);
                    s.S0 = s.S0 * scale + bias;
                    s.S1 = s.S1 * scale + bias;
                    s.S2 = s.S2 * scale + bias;
                    s.S3 = s.S3 * scale + bias;
                }
                int y = at + layer.OutputOffset + o;
                mem.Scratch(y) = Activations.Apply(layer.Activation, s.S0);
                if (count == 4)
                {
                    mem.Scratch(y + width) = Activations.Apply(layer.Activation, s.S1);
                    mem.Scratch(y + 2 * width) = Activations.Apply(layer.Activation, s.S2);
                    mem.Scratch(y + 3 * width) = Activations.Apply(layer.Activation, s.S3);
                }
            }
            previous = layer;
        }
        return previous.OutputOffset;
    }

    /// <summary>scratch[to + j] = x[from + j] r[j] for j in [0, n): a layer's input times a member's input scale.</summary>
    private static void ScaleInput<TMemory>(TMemory mem, bool fromFeatures, int from, int to, int r, int n) where TMemory : struct, IEpochMemory
    {
        for (int j = 0; j < n; j++)
            mem.Scratch(to + j) = (fromFeatures ? mem.Feature(from + j) : mem.Scratch(from + j)) * mem.Parameter(r + j);
    }

    /// <summary>
    /// Member <paramref name="member"/>'s forward pass of one input row into the scratch row at
    /// <paramref name="at"/>, each layer reading the input row (layer 0) or the previous layer's outputs; hidden
    /// outputs take the dropout mask of (step, maskRow). Returns where the logit sits in the scratch row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int ForwardMember<TMemory>(TMemory mem, int layers, int row, int at, int member, in StepSettings settings, int step, int maskRow)
        where TMemory : struct, IEpochMemory
    {
        var previous = mem.Layer(0);
        for (int l = 0; l < layers; l++)
        {
            var layer = mem.Layer(l);
            bool fromFeatures = l == 0;
            int x = l == 0 ? row * layer.Inputs : at + previous.OutputOffset;
            if (layer.HasInputScale)
            {
                ScaleInput(mem, fromFeatures, x, at + layer.ScaledInputOffset, layer.InputScale(member), layer.Inputs);
                fromFeatures = false;
                x = at + layer.ScaledInputOffset;
            }
            for (int o = 0; o < layer.Outputs; o++)
            {
                float sum = mem.Dot(fromFeatures, x + layer.FirstInput(o), layer.Weight(member) + o * layer.InputsPerGroup, layer.InputsPerGroup);
                float bias = mem.Parameter(layer.Bias(member) + o);
                if (layer.HasOutputScale)
                {
                    mem.Scratch(at + layer.PreScaleOffset + o) = sum;
                    sum = sum * mem.Parameter(layer.OutputScale(member) + o) + bias;
                }
                else
                {
                    sum += bias;
                }
                if (layer.KeepsPreActivation)
                    mem.Scratch(at + layer.PreActivationOffset + o) = sum;
                float y = Activations.Apply(layer.Activation, sum);
                if (layer.DropsOutputs != 0)
                    y *= Dropout.Factor(settings.DropoutSeed, step, maskRow, l, o, settings.DropoutRate);
                mem.Scratch(at + layer.OutputOffset + o) = y;
            }
            previous = layer;
        }
        return previous.OutputOffset;
    }

    /// <summary>
    /// Member <paramref name="member"/>'s backward pass of one row (BatchedDense's formulas): from dL/dz at its
    /// logit (in the delta row at <paramref name="deltaAt"/>) down the layers, adding every gradient of its
    /// tensors to this thread's gradient copy at <paramref name="gradients"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardMember<TMemory>(TMemory mem, int layers, int row, int at, int deltaAt, int member, int gradients,
        in StepSettings settings, int step, int maskRow) where TMemory : struct, IEpochMemory
    {
        for (int l = layers - 1; l >= 0; l--)
        {
            var layer = mem.Layer(l);
            int nIn = layer.Inputs;
            var previous = mem.Layer(l > 0 ? l - 1 : 0);
            int layerIn = previous.OutputOffset; // where this layer's input sits in the row's outputs (l > 0)
            bool hasR = layer.HasInputScale;
            int xIn = l == 0 ? row * nIn : at + layerIn;                  // the layer's input
            int xw = hasR ? at + layer.ScaledInputOffset : xIn;            // what W multiplied: x, or x * r
            bool xwFeatures = l == 0 && !hasR, needG = l > 0 || hasR;
            int g = hasR ? deltaAt + layer.ScaledInputOffset : deltaAt + layerIn; // the gradient at xw
            if (needG)
                for (int i = 0; i < nIn; i++)
                    mem.Scratch(g + i) = 0f;
            int w = layer.Weight(member), n = layer.InputsPerGroup;
            for (int o = 0; o < layer.Outputs; o++)
            {
                int first = layer.FirstInput(o);
                float d = mem.Scratch(deltaAt + layer.OutputOffset + o);
                mem.Gradient(gradients + layer.Bias(member) + o) += d;
                if (layer.HasOutputScale)
                {
                    int s = layer.OutputScale(member) + o;
                    mem.Gradient(gradients + s) += d * mem.Scratch(at + layer.PreScaleOffset + o);
                    d *= mem.Parameter(s);
                }
                mem.AddScaledInput(gradients + w + o * n, d, xwFeatures, xw + first, n);
                if (needG)
                    mem.AddScaledWeights(g + first, d, w + o * n, n);
            }
            if (hasR)
            {
                int r = layer.InputScale(member);
                for (int i = 0; i < nIn; i++)
                {
                    float gi = mem.Scratch(g + i);
                    mem.Gradient(gradients + r + i) += gi * (l == 0 ? mem.Feature(xIn + i) : mem.Scratch(xIn + i));
                    if (l > 0)
                        mem.Scratch(deltaAt + layerIn + i) = gi * mem.Parameter(r + i);
                }
            }
            if (l > 0)
                for (int i = 0; i < nIn; i++)
                    mem.Scratch(deltaAt + layerIn + i) = mem.Scratch(deltaAt + layerIn + i)
                        * Activations.Derivative(previous.Activation, mem.Scratch(at + layerIn + i),
                            previous.KeepsPreActivation ? mem.Scratch(at + previous.PreActivationOffset + i) : 0f)
                        * (previous.DropsOutputs != 0 ? Dropout.Factor(settings.DropoutSeed, step, maskRow, l - 1, i, settings.DropoutRate) : 1f);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Score<TMemory>(TMemory mem, CpuEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int layers = (int)a.Layers.Length, k = a.Members, width = a.ActivationWidth;
        int rowOut = thread * 2 * a.RowsPerThread * k * width;
        int perThread = (a.Rows + threads - 1) / threads;
        int end = Math.Min(a.Rows, (thread + 1) * perThread);
        var noDropout = new StepSettings();
        for (int position = thread * perThread; position < end; position++)
        {
            int row = mem.Order(position);
            float y = mem.Label(row);
            float first = 0f, lossSum = 0f, pSum = 0f, qSum = 0f;
            for (int i = 0; i < k; i++)
            {
                int at = rowOut + i * width;
                float z = mem.Scratch(at + ForwardMember(mem, layers, row, at, i, noDropout, 0, 0));
                Accumulate(k, i, z, y, ref first, ref lossSum, ref pSum, ref qSum);
            }
            mem.SampleLoss(position) = Loss.EnsembleLoss(k, first, lossSum, pSum, qSum, y, lossOfMean: 1);
            mem.SampleCorrect(position) = Loss.EnsembleCorrect(k, first, pSum, y);
        }
    }

    /// <summary>Member i's logit into a sample's sums (<see cref="Loss.EnsembleLoss"/>): only the first logit when there is one member.</summary>
    private static void Accumulate(int k, int i, float z, float y, ref float first, ref float lossSum, ref float pSum, ref float qSum)
    {
        if (i == 0)
            first = z;
        if (k > 1)
        {
            lossSum += Loss.BinaryCrossEntropy(z, y);
            pSum += Activations.Sigmoid(z);
            qSum += Activations.Sigmoid(-z);
        }
    }

    // The body is a method of its own, not the kernel entry: the JIT compiles ILGPU's CPU kernel entry
    // methods without full optimisation, while the methods they call get it (measured: 4x on a dot product).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Train<TMemory>(TMemory mem, CpuEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int layers = (int)a.Layers.Length, k = a.Members, width = a.ActivationWidth;
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

            for (int r = 0; r < myRows; r++)
            {
                int position = batchStart + myStart + r;
                int row = mem.Order(position);
                int rowOut = outputsBase + r * k * width;
                int rowDelta = deltasBase + r * k * width;
                float y = mem.Label(row), target = Loss.SmoothedTarget(y, a.Settings.LabelSmoothing);

                // Forward and loss for every member (sigmoid fused with binary cross-entropy; dL/dz = (p - y) / (batch k)),
                // then each member's backward pass, the forward reversed.
                float first = 0f, lossSum = 0f, pSum = 0f, qSum = 0f;
                for (int i = 0; i < k; i++)
                {
                    int at = rowOut + i * width;
                    int logitAt = ForwardMember(mem, layers, row, at, i, a.Settings, globalStep, (myStart + r) * k + i);
                    float z = mem.Scratch(at + logitAt);
                    mem.Scratch(rowDelta + i * width + logitAt) = Loss.LogitGradient(z, target) * scale;
                    Accumulate(k, i, z, target, ref first, ref lossSum, ref pSum, ref qSum);
                }
                mem.SampleLoss(position) = Loss.EnsembleLoss(k, first, lossSum, pSum, qSum, target, lossOfMean: 0);
                mem.SampleCorrect(position) = Loss.EnsembleCorrect(k, first, pSum, y);
                for (int i = 0; i < k; i++)
                    BackwardMember(mem, layers, row, rowOut + i * width, rowDelta + i * width, i, gradientBase, a.Settings, globalStep, (myStart + r) * k + i);
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
        var config = new KernelConfig(1, CpuEpochThreads);
        if (Kind != AcceleratorKind.Cpu || throughViews)
            (views ??= Accelerator.LoadStreamKernel(viewKernel))(config, a);
        else
            (pointers ??= Accelerator.LoadStreamKernel(pointerKernel))(config, a, Addresses(a));
    }

    /// <summary>Threads of the one group the CPU epoch kernels run in.</summary>
    public int CpuEpochThreads => Kind == AcceleratorKind.Cpu ? Accelerator.MaxNumThreadsPerGroup : Math.Min(256, Accelerator.MaxNumThreadsPerGroup);

    /// <summary>Loss and correctness of rows [0, Rows) in Order with the current parameters, in one launch; Schedule and gradients unused.</summary>
    public void ScoreCpuEpoch(CpuEpochArgs a, ParameterLayout layout, bool throughViews = false)
    {
        Check(ref a, layout, "CPU epoch score");
        Require(a.Rows >= 1 && a.Order.Length >= a.Rows && a.SampleLoss.Length >= a.Rows && a.SampleCorrect.Length >= a.Rows,
            "CPU epoch score: order and per-sample outputs must hold the rows");
        Require(a.Scratch.Length >= (long)CpuEpochThreads * 2 * a.RowsPerThread * a.Members * a.ActivationWidth && a.RowsPerThread >= 1, "CPU epoch score: scratch too small");
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
