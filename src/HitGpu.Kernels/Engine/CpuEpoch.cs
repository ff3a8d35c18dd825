// The CPU epoch: a whole training epoch of the network (any ParameterLayout ending in one logit, binary
// cross-entropy, Adam) in ONE launch of one group, and scoring and prediction likewise. Made for ILGPU's CPU
// accelerator, where every launch costs ~100 us and a group barrier ~15 us but plain loops run at C# speed:
// instead of the layered path's 10-14 launches per step it takes 2 barriers. It reads its buffers through
// host addresses (CpuEpochMemory.cs), so it runs on the CPU accelerator only.
//
// Each step, thread t of T takes a contiguous slice of the batch's rows and runs forward, loss and backward
// for them alone (every ensemble member of each row, four rows at a time: CpuEpochRows.cs), into its own
// scratch and its own copy of the gradient (no sharing, no atomics). After a barrier each thread takes a
// slice of the parameters, sums the T gradient copies in thread order (fixed order: the same bits each run)
// and applies Adam. After a second barrier the next step reads the new parameters. Each step's learning
// rate and bias corrections come from a schedule the host fills.
//
// The reference: NetworkReference.Step and Adam.UpdateReference per batch (TrainReference below).
using System.Runtime.CompilerServices;
using ILGPU;

namespace HitGpu.Kernels;

/// <summary>The train kernel's arguments: host addresses (CPU accelerator), taken and checked by the launcher.</summary>
public struct EpochTrainArgs
{
    public RowMemory Memory;     // features (n, inputs), parameters, scratch (threads, 2 RowsPerThread k width), layers, gradients (threads, count)
    public EpochShape Shape;
    public long Labels;          // (n) 0 or 1
    public long Order;           // (n) this epoch's shuffled row order
    public long SampleLoss;      // (n) per position in Order
    public long SampleCorrect;   // (n)
    public long AdamM, AdamV;    // (count)
    public long Schedule;        // (steps) this epoch's Adam steps
    public int Rows, BatchSize;
    public int FirstStep;        // the global step number of this epoch's first step, for the dropout mask
    public StepSettings Settings;
}

/// <summary>The score kernel's arguments: each row's loss and correctness with the current parameters.</summary>
public struct EpochScoreArgs
{
    public RowMemory Memory;     // no gradients
    public EpochShape Shape;
    public long Labels, SampleLoss, SampleCorrect; // (n) each, rows in place
    public int Rows;
}

/// <summary>The predict kernel's arguments: P(hit) of each row.</summary>
public struct EpochPredictArgs
{
    public RowMemory Memory;     // no gradients
    public EpochShape Shape;
    public long Probabilities;   // (n)
    public int Rows;
}

public static class CpuEpoch
{
    // Each kernel's body is a method of its own, not the kernel entry: the JIT compiles ILGPU's CPU kernel
    // entry methods without full optimisation, while the methods they call get it (measured: 4x on a dot product).

    public static void TrainKernel(EpochTrainArgs a) => Train(a);

    /// <summary>Each row's loss (of the members' mean probability) and correctness with the current parameters (no training).</summary>
    public static void ScoreKernel(EpochScoreArgs a) => Score(a);

    /// <summary>P(hit) of rows [0, Rows), each output summed <see cref="SumOrder.FromBias"/> as the simple layered kernels sum it: on the CPU accelerator
    /// prediction gives the same bits on either path.</summary>
    public static void PredictKernel(EpochPredictArgs a) => Predict(a);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Train(EpochTrainArgs a)
    {
        var mem = a.Memory;
        var shape = a.Shape;
        int thread = Group.IdxX, threads = Group.DimX;
        int k = shape.Members, stride = k * shape.ActivationWidth, count = shape.ParameterCount;
        int steps = (a.Rows + a.BatchSize - 1) / a.BatchSize;
        int gradientBase = thread * count;
        int outputsBase = thread * 2 * shape.RowsPerThread * stride;
        int deltasBase = outputsBase + shape.RowsPerThread * stride;
        float* sampleLoss = (float*)a.SampleLoss, sampleCorrect = (float*)a.SampleCorrect, labels = (float*)a.Labels;
        float* m = (float*)a.AdamM, v = (float*)a.AdamV;

        for (int step = 0; step < steps; step++)
        {
            int batchStart = step * a.BatchSize;
            int batchRows = Math.Min(a.BatchSize, a.Rows - batchStart);
            int perThread = (batchRows + threads - 1) / threads;
            int myStart = Math.Min(batchRows, thread * perThread);
            int myRows = Math.Min(batchRows, myStart + perThread) - myStart;
            float scale = 1f / (batchRows * k); // the loss: a mean over the batch and the members
            int globalStep = a.FirstStep + step;

            for (int p = 0; p < count; p++)
                mem.Gradient(gradientBase + p) = 0f;

            for (int r = 0; r < myRows;)
            {
                int position = batchStart + myStart + r;
                var rows = CpuEpochRows.NextRows(a.Order, position, batchStart + myStart + myRows, out int n);
                int rowOut = outputsBase + r * stride, rowDelta = deltasBase + r * stride, maskRow = (myStart + r) * k;
                // Forward and loss for every member (sigmoid fused with binary cross-entropy; dL/dz = (p - y) / (batch k)),
                // then each member's backward pass, the forward reversed.
                var sums = CpuEpochRows.ForwardMembers(mem, shape, rows, n, rowOut, a.Labels, a.Settings, globalStep, maskRow, SumOrder.BiasLast,
                    scale, rowDelta);
                for (int q = 0; q < n; q++)
                {
                    float y = labels[rows[q]], target = Loss.SmoothedTarget(y, a.Settings.LabelSmoothing);
                    sampleLoss[position + q] = sums[q].SampleLoss(k, target, lossOfMean: 0);
                    sampleCorrect[position + q] = sums[q].SampleCorrect(k, y);
                }
                for (int i = 0; i < k; i++)
                    CpuEpochRows.BackwardRows(mem, shape.Layers, rows, n, rowOut + i * shape.ActivationWidth, rowDelta + i * shape.ActivationWidth, stride, i,
                        gradientBase, a.Settings, globalStep, maskRow + i, k);
                r += n;
            }
            Group.Barrier();

            // Adam over this thread's slice of the parameters, the T gradient copies summed in thread order.
            var s = ((AdamStep*)a.Schedule)[step];
            int perThreadParameters = (count + threads - 1) / threads;
            int pStart = thread * perThreadParameters, pEnd = Math.Min(count, pStart + perThreadParameters);
            for (int p = pStart; p < pEnd; p++)
            {
                float gradient = 0f;
                for (int t = 0; t < threads; t++)
                    gradient += mem.Gradient(t * count + p);
                float mp = m[p], vp = v[p];
                mem.Parameter(p) = Adam.UpdateOne(ref mp, ref vp, mem.Parameter(p), gradient, s);
                m[p] = mp;
                v[p] = vp;
            }
            Group.Barrier();
        }
    }

    private static void Score(EpochScoreArgs a) =>
        Evaluate(a.Memory, a.Shape, a.Rows, a.Labels, a.SampleLoss, a.SampleCorrect, probabilities: 0, SumOrder.BiasLast);

    private static void Predict(EpochPredictArgs a) =>
        Evaluate(a.Memory, a.Shape, a.Rows, labels: 0, sampleLoss: 0, sampleCorrect: 0, a.Probabilities, SumOrder.FromBias);

    /// <summary>
    /// Scoring and prediction: this thread's contiguous slice of the rows, four at a time, every member's
    /// forward pass without dropout; with labels each row's loss (of the members' mean probability) and
    /// correctness, without them its P(hit).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Evaluate(in RowMemory mem, in EpochShape shape, int rowCount, long labels, long sampleLoss, long sampleCorrect,
        long probabilities, SumOrder order)
    {
        int thread = Group.IdxX, threads = Group.DimX, k = shape.Members;
        int rowOut = thread * 2 * shape.RowsPerThread * k * shape.ActivationWidth; // room for four rows: RowsPerThread >= 2
        int perThread = (rowCount + threads - 1) / threads;
        int end = Math.Min(rowCount, (thread + 1) * perThread);
        var noDropout = new StepSettings();
        for (int position = thread * perThread; position < end;)
        {
            var rows = CpuEpochRows.NextRows(0, position, end, out int n);
            var sums = CpuEpochRows.ForwardMembers(mem, shape, rows, n, rowOut, labels, noDropout, 0, 0, order, 0f, 0);
            for (int q = 0; q < n; q++)
            {
                if (labels == 0)
                {
                    ((float*)probabilities)[position + q] = Loss.MeanProbability(sums[q].P, k);
                    continue;
                }
                float y = ((float*)labels)[rows[q]];
                ((float*)sampleLoss)[position + q] = sums[q].SampleLoss(k, y, lossOfMean: 1);
                ((float*)sampleCorrect)[position + q] = sums[q].SampleCorrect(k, y);
            }
            position += n;
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
