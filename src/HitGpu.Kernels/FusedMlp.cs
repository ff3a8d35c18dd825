// A whole training epoch of a dense ReLU network with one logit, binary cross-entropy and Adam, in ONE
// launch of one group. Made for ILGPU's CPU accelerator, where every launch costs ~100 us and a group
// barrier ~15 us but plain loops run at C# speed: instead of 10 launches per step it takes 2 barriers.
//
// Each step, thread t of T takes a contiguous slice of the batch's rows and runs forward, loss and backward
// for them alone, into its own scratch and its own copy of the gradient (no sharing, no atomics). After a
// barrier each thread takes a slice of the parameters, sums the T gradient copies in thread order (fixed
// order: the same bits each run) and applies Adam. After a second barrier the next step reads the new
// parameters. The per-step learning rate and bias corrections come from a small table the host fills.
//
// The reference is the layer-by-layer path: Dense/Loss/Adam references (see TrainEpochReference).
using ILGPU;
using ILGPU.Runtime;

namespace HitGpu.Kernels;

public struct FusedEpochArgs
{
    public ArrayView<float> Features;        // (n, widths[0]) standardised inputs
    public ArrayView<float> Labels;          // (n) 0 or 1
    public ArrayView<int> Order;             // (n) this epoch's shuffled row order
    public ArrayView<float> SampleLoss;      // (n) per position in Order
    public ArrayView<float> SampleCorrect;   // (n)
    public ArrayView<float> Parameters;      // (count) [W0 (out, in), b0, W1, b1, ...]
    public ArrayView<float> AdamM, AdamV;    // (count)
    public ArrayView<float> ThreadGradients; // (threads, count) one gradient copy per thread
    public ArrayView<float> Scratch;         // (threads, 2 * rowsPerThread * activationWidth): outputs, then deltas
    public ArrayView<int> Widths;            // (layers + 1)
    public ArrayView<float> Schedule;        // (steps, 3): learning rate, 1 - beta1^t, 1 - beta2^t
    public int Rows, BatchSize, Layers, ParameterCount, RowsPerThread, ActivationWidth;
    public float Beta1, Beta2, Epsilon, WeightDecay;
    public float DropoutRate;                // on hidden outputs while training; 0 = off
    public uint DropoutSeed;
    public int FirstStep;                    // the global step number of this epoch's first step, for the dropout mask
}

/// <summary>
/// How the fused epoch reaches its buffers. The algorithm is written once against this interface;
/// <see cref="ViewMemory"/> reads ILGPU array views (every backend), <see cref="PointerMemory"/> raw
/// pointers into CPU-accelerator buffers, where a view access costs ~2 ns and a pointer access ~0.3 ns.
/// </summary>
public interface IEpochMemory
{
    float Feature(int i);
    float Label(int i);
    int Order(int i);
    int Width(int layer);
    float Schedule(int i);
    ref float SampleLoss(int i);
    ref float SampleCorrect(int i);
    ref float Parameter(int i);
    ref float M(int i);
    ref float V(int i);
    ref float Gradient(int i);
    ref float Scratch(int i);

    /// <summary>sum_i x[x + i] W[w + i], x from the features (fromFeatures) or the scratch, W the parameters.</summary>
    float Dot(bool fromFeatures, int x, int w, int n);

    /// <summary>gradient[g + i] += d * x[x + i] for i in [0, n), x as in <see cref="Dot"/>.</summary>
    void AddScaledInput(int g, float d, bool fromFeatures, int x, int n);

    /// <summary>scratch[s + i] += d * W[w + i] for i in [0, n).</summary>
    void AddScaledWeights(int s, float d, int w, int n);
}

public readonly struct ViewMemory(FusedEpochArgs a) : IEpochMemory
{
    public float Feature(int i) => a.Features[i];
    public float Label(int i) => a.Labels[i];
    public int Order(int i) => a.Order[i];
    public int Width(int layer) => a.Widths[layer];
    public float Schedule(int i) => a.Schedule[i];
    public ref float SampleLoss(int i) => ref a.SampleLoss[i];
    public ref float SampleCorrect(int i) => ref a.SampleCorrect[i];
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

/// <summary>The addresses of a <see cref="FusedEpochArgs"/>' CPU buffers, taken on the host (CPU accelerator only).</summary>
public struct EpochAddresses
{
    public long Features, Labels, Order, Widths, Schedule, SampleLoss, SampleCorrect, Parameters, M, V, Gradients, Scratch;
}

public readonly unsafe struct PointerMemory(EpochAddresses p) : IEpochMemory
{
    public float Feature(int i) => ((float*)p.Features)[i];
    public float Label(int i) => ((float*)p.Labels)[i];
    public int Order(int i) => ((int*)p.Order)[i];
    public int Width(int layer) => ((int*)p.Widths)[layer];
    public float Schedule(int i) => ((float*)p.Schedule)[i];
    public ref float SampleLoss(int i) => ref ((float*)p.SampleLoss)[i];
    public ref float SampleCorrect(int i) => ref ((float*)p.SampleCorrect)[i];
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

public static class FusedMlp
{
    /// <summary>The kernel for every backend: buffers through array views.</summary>
    public static void TrainEpochKernel(FusedEpochArgs a) => TrainEpoch(new ViewMemory(a), a);

    /// <summary>
    /// The same epoch for the CPU accelerator only, through raw pointers (4-5x faster there). Kept out of
    /// the GPU compile tests on purpose: GPU memory has no host address.
    /// </summary>
    public static void TrainEpochCpuKernel(FusedEpochArgs a, EpochAddresses addresses) => TrainEpoch(new PointerMemory(addresses), a);

    /// <summary>Parameters, gradients, moments: offset of layer l's weight in the flat array.</summary>
    private static int WeightOffset<TMemory>(TMemory mem, int layer) where TMemory : struct, IEpochMemory
    {
        int offset = 0;
        for (int l = 0; l < layer; l++)
            offset += mem.Width(l + 1) * mem.Width(l) + mem.Width(l + 1);
        return offset;
    }

    /// <summary>
    /// The forward pass of one input row into the scratch row at rowOut: layer l reads the input row (l = 0)
    /// or layer l-1's outputs, and writes its own. Returns where the logit sits in the scratch row.
    /// </summary>
    private static int ForwardRow<TMemory>(TMemory mem, FusedEpochArgs a, int row, int rowOut, float dropoutRate, int step, int rowInBatch)
        where TMemory : struct, IEpochMemory
    {
        int inputs = mem.Width(0);
        int w = 0, previousOffset = 0, outOffset = 0;
        for (int l = 0; l < a.Layers; l++)
        {
            int nIn = mem.Width(l), nOut = mem.Width(l + 1);
            int b = w + nOut * nIn;
            bool last = l == a.Layers - 1;
            for (int o = 0; o < nOut; o++)
            {
                int wRow = w + o * nIn;
                float sum = l == 0
                    ? mem.Dot(true, row * inputs, wRow, nIn)
                    : mem.Dot(false, rowOut + previousOffset, wRow, nIn);
                sum += mem.Parameter(b + o);
                mem.Scratch(rowOut + outOffset + o) = last ? sum
                    : (sum > 0f ? sum : 0f) * Dropout.Factor(a.DropoutSeed, step, rowInBatch, l, o, dropoutRate);
            }
            previousOffset = outOffset;
            outOffset += nOut;
            w = b + nOut;
        }
        return outOffset - 1;
    }

    /// <summary>Every backend: each row's loss and correctness with the current parameters (no training).</summary>
    public static void ScoreKernel(FusedEpochArgs a) => Score(new ViewMemory(a), a);

    /// <summary>The same for the CPU accelerator, through raw pointers.</summary>
    public static void ScoreCpuKernel(FusedEpochArgs a, EpochAddresses addresses) => Score(new PointerMemory(addresses), a);

    private static void Score<TMemory>(TMemory mem, FusedEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int rowOut = thread * 2 * a.RowsPerThread * a.ActivationWidth;
        int perThread = (a.Rows + threads - 1) / threads;
        int end = Math.Min(a.Rows, (thread + 1) * perThread);
        for (int position = thread * perThread; position < end; position++)
        {
            int row = mem.Order(position);
            float z = mem.Scratch(rowOut + ForwardRow(mem, a, row, rowOut, 0f, 0, 0));
            float y = mem.Label(row);
            mem.SampleLoss(position) = Loss.BinaryCrossEntropy(z, y);
            mem.SampleCorrect(position) = Loss.Correct(z, y);
        }
    }

    // The body is a method of its own, not the kernel entry: the JIT compiles ILGPU's CPU kernel entry
    // methods without full optimisation, while the methods they call get it (measured: 4x on a dot product).
    private static void TrainEpoch<TMemory>(TMemory mem, FusedEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int steps = (a.Rows + a.BatchSize - 1) / a.BatchSize;
        int gradientBase = thread * a.ParameterCount;
        int outputsBase = thread * 2 * a.RowsPerThread * a.ActivationWidth;
        int deltasBase = outputsBase + a.RowsPerThread * a.ActivationWidth;
        int inputs = mem.Width(0);
        float keepScale = a.DropoutRate > 0f ? 1f / (1f - a.DropoutRate) : 1f;

        for (int step = 0; step < steps; step++)
        {
            int batchStart = step * a.BatchSize;
            int batchRows = Math.Min(a.BatchSize, a.Rows - batchStart);
            int perThread = (batchRows + threads - 1) / threads;
            int myStart = Math.Min(batchRows, thread * perThread);
            int myRows = Math.Min(batchRows, myStart + perThread) - myStart;
            float scale = 1f / batchRows;

            for (int p = 0; p < a.ParameterCount; p++)
                mem.Gradient(gradientBase + p) = 0f;

            for (int r = 0; r < myRows; r++)
            {
                int position = batchStart + myStart + r;
                int row = mem.Order(position);
                int rowOut = outputsBase + r * a.ActivationWidth;
                int rowDelta = deltasBase + r * a.ActivationWidth;

                int logitAt = ForwardRow(mem, a, row, rowOut, a.DropoutRate, a.FirstStep + step, myStart + r);

                // Loss: sigmoid fused with binary cross-entropy; dL/dz = (p - y) / batch.
                float z = mem.Scratch(rowOut + logitAt);
                float y = mem.Label(row);
                mem.SampleLoss(position) = Loss.BinaryCrossEntropy(z, y);
                mem.SampleCorrect(position) = Loss.Correct(z, y);
                mem.Scratch(rowDelta + logitAt) = (Activations.Sigmoid(z) - y) * scale;

                // Backward, the forward reversed: gradient copies += delta x input; input deltas through ReLU.
                int layerOut = logitAt;
                for (int l = a.Layers - 1; l >= 0; l--)
                {
                    int nIn = mem.Width(l), nOut = mem.Width(l + 1);
                    int wl = WeightOffset(mem, l);
                    int bl = wl + nOut * nIn;
                    int layerIn = layerOut - nIn; // where this layer's input sits in the row's outputs (l > 0)
                    if (l > 0)
                        for (int i = 0; i < nIn; i++)
                            mem.Scratch(rowDelta + layerIn + i) = 0f;
                    for (int o = 0; o < nOut; o++)
                    {
                        float d = mem.Scratch(rowDelta + layerOut + o);
                        mem.Gradient(gradientBase + bl + o) += d;
                        int g = gradientBase + wl + o * nIn;
                        if (l == 0)
                        {
                            mem.AddScaledInput(g, d, true, row * inputs, nIn);
                        }
                        else
                        {
                            mem.AddScaledInput(g, d, false, rowOut + layerIn, nIn);
                            mem.AddScaledWeights(rowDelta + layerIn, d, wl + o * nIn, nIn);
                        }
                    }
                    // Through ReLU and dropout: a unit that output 0 passes nothing back (off, or dropped);
                    // a kept unit's delta takes the dropout scale 1 / (1 - rate).
                    if (l > 0)
                        for (int i = 0; i < nIn; i++)
                            mem.Scratch(rowDelta + layerIn + i) = mem.Scratch(rowOut + layerIn + i) > 0f ? mem.Scratch(rowDelta + layerIn + i) * keepScale : 0f;
                    layerOut = layerIn;
                }
            }
            Group.Barrier();

            // Adam over this thread's slice of the parameters, the T gradient copies summed in thread order.
            var s = new AdamStep
            {
                LearningRate = mem.Schedule(step * 3), BiasCorrection1 = mem.Schedule(step * 3 + 1), BiasCorrection2 = mem.Schedule(step * 3 + 2),
                Beta1 = a.Beta1, Beta2 = a.Beta2, Epsilon = a.Epsilon, WeightDecay = a.WeightDecay,
            };
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

    // ---- reference: the same epoch, layer by layer, with the Dense, Loss and Adam references ----

    /// <summary>
    /// One epoch in plain C#: for each batch of <paramref name="order"/>, forward, loss, backward and one
    /// Adam step with <paramref name="schedule"/>'s learning rate and bias corrections. Updates the parameters
    /// and moments in place and writes each sample's loss and correctness at its position in the order.
    /// </summary>
    public static void TrainEpochReference(ReadOnlySpan<int> widths, ReadOnlySpan<float> features, ReadOnlySpan<float> labels,
        ReadOnlySpan<int> order, int batchSize, ReadOnlySpan<float> schedule, Span<float> parameters, Span<float> m, Span<float> v,
        Span<float> sampleLoss, Span<float> sampleCorrect, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-7f, float weightDecay = 0f,
        float dropoutRate = 0f, uint dropoutSeed = 0, int firstStep = 0)
    {
        int layers = widths.Length - 1, inputs = widths[0], rows = order.Length;
        var gradient = new float[parameters.Length];
        for (int step = 0, start = 0; start < rows; step++, start += batchSize)
        {
            int batch = Math.Min(batchSize, rows - start);
            var outputs = new float[layers + 1][];
            outputs[0] = new float[batch * inputs];
            for (int r = 0; r < batch; r++)
                features.Slice(order[start + r] * inputs, inputs).CopyTo(outputs[0].AsSpan(r * inputs));
            int offset = 0;
            var weightAt = new int[layers];
            for (int l = 0; l < layers; l++)
            {
                weightAt[l] = offset;
                int nIn = widths[l], nOut = widths[l + 1];
                outputs[l + 1] = new float[batch * nOut];
                Dense.ForwardReference<float>(outputs[l], parameters.Slice(offset, nOut * nIn), parameters.Slice(offset + nOut * nIn, nOut),
                    outputs[l + 1], batch, nIn, nOut, l == layers - 1 ? Activation.Identity : Activation.Relu);
                if (l < layers - 1)
                    Dropout.ApplyReference(outputs[l + 1], batch, nOut, dropoutSeed, firstStep + step, l, dropoutRate);
                offset += nOut * nIn + nOut;
            }
            var delta = new float[batch];
            for (int r = 0; r < batch; r++)
            {
                float z = outputs[layers][r], y = labels[order[start + r]];
                sampleLoss[start + r] = Loss.BinaryCrossEntropyReference(z, y);
                sampleCorrect[start + r] = Loss.IsCorrectReference(z, y) ? 1f : 0f;
                delta[r] = Loss.GradientReference(z, y) / batch;
            }
            for (int l = layers - 1; l >= 0; l--)
            {
                int nIn = widths[l], nOut = widths[l + 1];
                var inputDelta = l > 0 ? new float[batch * nIn] : [];
                Dense.BackwardReference<float>(outputs[l], parameters.Slice(weightAt[l], nOut * nIn), delta,
                    gradient.AsSpan(weightAt[l], nOut * nIn), gradient.AsSpan(weightAt[l] + nOut * nIn, nOut), inputDelta,
                    batch, nIn, nOut, l > 0 ? Activation.Relu : Activation.Identity);
                if (l > 0)
                    Dropout.ApplyReference(inputDelta, batch, nIn, dropoutSeed, firstStep + step, l - 1, dropoutRate);
                delta = inputDelta;
            }
            var s = new AdamStep
            {
                LearningRate = schedule[step * 3], BiasCorrection1 = schedule[step * 3 + 1], BiasCorrection2 = schedule[step * 3 + 2],
                Beta1 = beta1, Beta2 = beta2, Epsilon = epsilon, WeightDecay = weightDecay,
            };
            Adam.UpdateReference(parameters, gradient, m, v, s);
        }
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, FusedEpochArgs>? fusedEpoch;
    private Action<KernelConfig, FusedEpochArgs, EpochAddresses>? fusedEpochCpu;
    private Action<KernelConfig, FusedEpochArgs>? fusedScore;
    private Action<KernelConfig, FusedEpochArgs, EpochAddresses>? fusedScoreCpu;

    /// <summary>Loss and correctness of rows [0, Rows) in Order with the current parameters, in one launch; Schedule and gradients unused.</summary>
    public void ScoreFused(in FusedEpochArgs a, bool throughViews = false)
    {
        Require(a.Rows >= 1 && a.Order.Length >= a.Rows && a.SampleLoss.Length >= a.Rows && a.SampleCorrect.Length >= a.Rows,
            "fused score: order and per-sample outputs must hold the rows");
        Require(a.Scratch.Length >= (long)FusedThreads * 2 * a.RowsPerThread * a.ActivationWidth && a.RowsPerThread >= 1, "fused score: scratch too small");
        var config = new KernelConfig(1, FusedThreads);
        if (Kind != AcceleratorKind.Cpu || throughViews)
            (fusedScore ??= Accelerator.LoadStreamKernel<FusedEpochArgs>(FusedMlp.ScoreKernel))(config, a);
        else
            (fusedScoreCpu ??= Accelerator.LoadStreamKernel<FusedEpochArgs, EpochAddresses>(FusedMlp.ScoreCpuKernel))(config, a, Addresses(a));
    }

    private static EpochAddresses Addresses(in FusedEpochArgs a) => new()
    {
        Features = Address(a.Features), Labels = Address(a.Labels), Order = Address(a.Order), Widths = Address(a.Widths),
        Schedule = Address(a.Schedule), SampleLoss = Address(a.SampleLoss), SampleCorrect = Address(a.SampleCorrect),
        Parameters = Address(a.Parameters), M = Address(a.AdamM), V = Address(a.AdamV),
        Gradients = Address(a.ThreadGradients), Scratch = Address(a.Scratch),
    };

    /// <summary>Threads of the one group the fused epoch kernel runs in.</summary>
    public int FusedThreads => Kind == AcceleratorKind.Cpu ? Accelerator.MaxNumThreadsPerGroup : Math.Min(256, Accelerator.MaxNumThreadsPerGroup);

    /// <summary>
    /// One epoch in one launch. On the CPU accelerator through raw pointers unless <paramref name="throughViews"/>
    /// asks for the every-backend entry (the tests run both against the reference).
    /// </summary>
    public void TrainEpochFused(in FusedEpochArgs a, bool throughViews = false)
    {
        int threads = FusedThreads;
        int steps = (a.Rows + a.BatchSize - 1) / a.BatchSize;
        Require(a.Widths.Length == a.Layers + 1, "fused epoch: widths must hold layers + 1 values");
        // The features' width lives in the device-side Widths; the caller (Network) checks it against its layout.
        Require(a.Labels.Length >= a.Rows && a.Order.Length >= a.Rows, "fused epoch: labels and order shorter than the rows");
        Require(a.SampleLoss.Length >= a.Rows && a.SampleCorrect.Length >= a.Rows, "fused epoch: per-sample outputs shorter than the rows");
        Require(a.Parameters.Length == a.ParameterCount && a.AdamM.Length == a.ParameterCount && a.AdamV.Length == a.ParameterCount,
            "fused epoch: parameters and moments must have the parameter count");
        Require(a.ThreadGradients.Length >= (long)threads * a.ParameterCount, $"fused epoch: need {threads} gradient copies");
        Require(a.RowsPerThread >= (Math.Min(a.BatchSize, a.Rows) + threads - 1) / threads, "fused epoch: scratch rows per thread too few for the batch");
        Require(a.Scratch.Length >= (long)threads * 2 * a.RowsPerThread * a.ActivationWidth, "fused epoch: scratch too small");
        Require(a.Schedule.Length >= steps * 3L, $"fused epoch: the schedule needs {steps} steps");
        var config = new KernelConfig(1, threads);
        if (Kind != AcceleratorKind.Cpu || throughViews)
        {
            (fusedEpoch ??= Accelerator.LoadStreamKernel<FusedEpochArgs>(FusedMlp.TrainEpochKernel))(config, a);
            return;
        }
        (fusedEpochCpu ??= Accelerator.LoadStreamKernel<FusedEpochArgs, EpochAddresses>(FusedMlp.TrainEpochCpuKernel))(config, a, Addresses(a));
    }

    private static long Address<T>(ArrayView<T> view) where T : unmanaged => view.LoadEffectiveAddressAsPtr().ToInt64();
}
