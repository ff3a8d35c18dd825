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
    public ArrayView<float> Scratch;         // (threads, 2 * rowsPerThread * activationWidth): outputs, then deltas
    public ArrayView<LayerShape> Layers;     // the ParameterLayout's shapes
    public ArrayView<AdamStep> Schedule;     // (steps) this epoch's Adam steps
    public int Rows, BatchSize, RowsPerThread;
    public int ParameterCount, ActivationWidth; // filled from the layout by the launcher
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
    // sums are added in the same order either way.
    private static void Predict<TMemory>(TMemory mem, CpuEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int layers = (int)a.Layers.Length;
        int rowOut = thread * 2 * a.RowsPerThread * a.ActivationWidth; // four rows of outputs: RowsPerThread >= 2
        int perThread = (a.Rows + threads - 1) / threads;
        int row = thread * perThread, end = Math.Min(a.Rows, (thread + 1) * perThread);
        for (; row + 3 < end; row += 4)
        {
            var previous = mem.Layer(0);
            for (int l = 0; l < layers; l++)
            {
                var layer = mem.Layer(l);
                for (int o = 0; o < layer.Outputs; o++)
                {
                    int wRow = layer.WeightOffset + o * layer.Inputs;
                    float bias = mem.Parameter(layer.BiasOffset + o);
                    var s = l == 0
                        ? mem.DotInOrder4(bias, true, row * layer.Inputs, layer.Inputs, wRow, layer.Inputs)
                        : mem.DotInOrder4(bias, false, rowOut + previous.OutputOffset, a.ActivationWidth, wRow, layer.Inputs);
                    int at = rowOut + layer.OutputOffset + o;
                    mem.Scratch(at) = Activations.Apply(layer.Activation, s.S0);
                    mem.Scratch(at + a.ActivationWidth) = Activations.Apply(layer.Activation, s.S1);
                    mem.Scratch(at + 2 * a.ActivationWidth) = Activations.Apply(layer.Activation, s.S2);
                    mem.Scratch(at + 3 * a.ActivationWidth) = Activations.Apply(layer.Activation, s.S3);
                }
                previous = layer;
            }
            for (int k = 0; k < 4; k++)
                mem.Probability(row + k) = Activations.Sigmoid(mem.Scratch(rowOut + k * a.ActivationWidth + previous.OutputOffset));
        }
        for (; row < end; row++)
        {
            var previous = mem.Layer(0);
            for (int l = 0; l < layers; l++)
            {
                var layer = mem.Layer(l);
                for (int o = 0; o < layer.Outputs; o++)
                {
                    int wRow = layer.WeightOffset + o * layer.Inputs;
                    float sum = l == 0
                        ? mem.DotInOrder(mem.Parameter(layer.BiasOffset + o), true, row * layer.Inputs, wRow, layer.Inputs)
                        : mem.DotInOrder(mem.Parameter(layer.BiasOffset + o), false, rowOut + previous.OutputOffset, wRow, layer.Inputs);
                    mem.Scratch(rowOut + layer.OutputOffset + o) = Activations.Apply(layer.Activation, sum);
                }
                previous = layer;
            }
            mem.Probability(row) = Activations.Sigmoid(mem.Scratch(rowOut + previous.OutputOffset));
        }
    }

    /// <summary>
    /// The forward pass of one input row into the scratch row at rowOut, each layer reading the input row
    /// (layer 0) or the previous layer's outputs; hidden outputs take the dropout mask of (step, rowInBatch).
    /// Returns where the logit sits in the scratch row.
    /// </summary>
    private static int ForwardRow<TMemory>(TMemory mem, int layers, int row, int rowOut, in StepSettings settings, int step, int rowInBatch)
        where TMemory : struct, IEpochMemory
    {
        var input = mem.Layer(0);
        var previous = input;
        for (int l = 0; l < layers; l++)
        {
            var layer = mem.Layer(l);
            for (int o = 0; o < layer.Outputs; o++)
            {
                int wRow = layer.WeightOffset + o * layer.Inputs;
                float sum = l == 0
                    ? mem.Dot(true, row * input.Inputs, wRow, layer.Inputs)
                    : mem.Dot(false, rowOut + previous.OutputOffset, wRow, layer.Inputs);
                sum += mem.Parameter(layer.BiasOffset + o);
                float y = Activations.Apply(layer.Activation, sum);
                if (l < layers - 1)
                    y *= Dropout.Factor(settings.DropoutSeed, step, rowInBatch, l, o, settings.DropoutRate);
                mem.Scratch(rowOut + layer.OutputOffset + o) = y;
            }
            previous = layer;
        }
        return previous.OutputOffset;
    }

    private static void Score<TMemory>(TMemory mem, CpuEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int layers = (int)a.Layers.Length;
        int rowOut = thread * 2 * a.RowsPerThread * a.ActivationWidth;
        int perThread = (a.Rows + threads - 1) / threads;
        int end = Math.Min(a.Rows, (thread + 1) * perThread);
        var noDropout = new StepSettings();
        for (int position = thread * perThread; position < end; position++)
        {
            int row = mem.Order(position);
            float z = mem.Scratch(rowOut + ForwardRow(mem, layers, row, rowOut, noDropout, 0, 0));
            float y = mem.Label(row);
            mem.SampleLoss(position) = Loss.BinaryCrossEntropy(z, y);
            mem.SampleCorrect(position) = Loss.Correct(z, y);
        }
    }

    // The body is a method of its own, not the kernel entry: the JIT compiles ILGPU's CPU kernel entry
    // methods without full optimisation, while the methods they call get it (measured: 4x on a dot product).
    private static void Train<TMemory>(TMemory mem, CpuEpochArgs a) where TMemory : struct, IEpochMemory
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int layers = (int)a.Layers.Length;
        int steps = (a.Rows + a.BatchSize - 1) / a.BatchSize;
        int gradientBase = thread * a.ParameterCount;
        int outputsBase = thread * 2 * a.RowsPerThread * a.ActivationWidth;
        int deltasBase = outputsBase + a.RowsPerThread * a.ActivationWidth;
        int inputs = mem.Layer(0).Inputs;

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

                int logitAt = ForwardRow(mem, layers, row, rowOut, a.Settings, a.FirstStep + step, myStart + r);

                // Loss: sigmoid fused with binary cross-entropy; dL/dz = (p - y) / batch.
                float z = mem.Scratch(rowOut + logitAt);
                float y = mem.Label(row);
                mem.SampleLoss(position) = Loss.BinaryCrossEntropy(z, y);
                mem.SampleCorrect(position) = Loss.Correct(z, y);
                mem.Scratch(rowDelta + logitAt) = Loss.LogitGradient(z, y) * scale;

                // Backward, the forward reversed: gradient copies += delta x input; input deltas through the
                // previous layer's activation (its derivative from its output) and its dropout mask.
                for (int l = layers - 1; l >= 0; l--)
                {
                    var layer = mem.Layer(l);
                    int nIn = layer.Inputs;
                    var previous = mem.Layer(l > 0 ? l - 1 : 0);
                    int layerIn = previous.OutputOffset; // where this layer's input sits in the row's outputs (l > 0)
                    if (l > 0)
                        for (int i = 0; i < nIn; i++)
                            mem.Scratch(rowDelta + layerIn + i) = 0f;
                    for (int o = 0; o < layer.Outputs; o++)
                    {
                        float d = mem.Scratch(rowDelta + layer.OutputOffset + o);
                        mem.Gradient(gradientBase + layer.BiasOffset + o) += d;
                        int g = gradientBase + layer.WeightOffset + o * nIn;
                        if (l == 0)
                        {
                            mem.AddScaledInput(g, d, true, row * inputs, nIn);
                        }
                        else
                        {
                            mem.AddScaledInput(g, d, false, rowOut + layerIn, nIn);
                            mem.AddScaledWeights(rowDelta + layerIn, d, layer.WeightOffset + o * nIn, nIn);
                        }
                    }
                    if (l > 0)
                        for (int i = 0; i < nIn; i++)
                            mem.Scratch(rowDelta + layerIn + i) = mem.Scratch(rowDelta + layerIn + i)
                                * Activations.DerivativeFromOutput(previous.Activation, mem.Scratch(rowOut + layerIn + i))
                                * Dropout.Factor(a.Settings.DropoutSeed, a.FirstStep + step, myStart + r, l - 1, i, a.Settings.DropoutRate);
                }
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
        Require(a.Scratch.Length >= (long)CpuEpochThreads * 2 * a.RowsPerThread * a.ActivationWidth && a.RowsPerThread >= 1, "CPU epoch score: scratch too small");
        LaunchCpuEpoch(a, throughViews, ref cpuEpochScore, CpuEpoch.ScoreKernel, ref cpuEpochScorePointers, CpuEpoch.ScorePointerKernel);
    }

    /// <summary>P(hit) of rows [0, Rows) into Probabilities, in one launch; labels, order, schedule and gradients unused.</summary>
    public void PredictCpuEpoch(CpuEpochArgs a, ParameterLayout layout, bool throughViews = false)
    {
        Check(ref a, layout, "CPU epoch predict");
        Require(a.Rows >= 1 && a.Probabilities.Length >= a.Rows, "CPU epoch predict: the probabilities must hold the rows");
        Require(a.Scratch.Length >= (long)CpuEpochThreads * 2 * a.RowsPerThread * a.ActivationWidth && a.RowsPerThread >= 2, "CPU epoch predict: scratch too small (four rows a thread)");
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
        Require(a.Scratch.Length >= (long)threads * 2 * a.RowsPerThread * a.ActivationWidth, "CPU epoch: scratch too small");
        Require(a.Schedule.Length >= steps, $"CPU epoch: the schedule needs {steps} steps");
        LaunchCpuEpoch(a, throughViews, ref cpuEpoch, CpuEpoch.TrainKernel, ref cpuEpochPointers, CpuEpoch.TrainPointerKernel);
    }

    /// <summary>The layout's sizes into the arguments, and the buffers checked against it.</summary>
    private static void Check(ref CpuEpochArgs a, ParameterLayout layout, string what)
    {
        a.ParameterCount = layout.Count;
        a.ActivationWidth = layout.ActivationWidth;
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
