// Binary cross-entropy computed from logits, with the sigmoid fused in:
//   L(z, y) = max(z, 0) - z y + log(1 + exp(-|z|))      (never log(0), never exp of a large number)
//   dL/dz   = sigmoid(z) - y                              (so the backward pass starts at (p - y) / batch)
// One kernel writes the gradient for the batch and each sample's loss and correctness for the epoch's metrics.
// With k ensemble members the logits are (rows k) and the training loss is the mean of the members' own
// losses (TabM: members are not averaged while training); a sample's metrics are either that mean (training)
// or the loss of the members' mean probability (scoring: what the ensemble predicts), its correctness always
// the mean probability's. One member: exactly the single-logit formulas.
using System.Numerics;
using ILGPU;

namespace HitGpu.Kernels;

public struct LossArgs
{
    public ArrayView<float> Logits;         // (rows): the network's last layer, no activation
    public RowSource Labels;               // 0 or 1 per sample, Cols = 1, read in the same order as the batch
    public ArrayView<float> LogitGradient;  // (rows): dL/dz of the mean batch loss
    public ArrayView<float> SampleLoss;     // written at Labels.Offset + r: one loss per sample of the epoch
    public ArrayView<float> SampleCorrect;  // written likewise: 1 where (z > 0) == (y == 1), else 0
    public int Rows;
    public float GradientScale;             // 1 / (rows k) for a mean over the batch and the members
    public int Members;                     // k logits per sample, member-minor (0 counts as 1)
    public int LossOfMean;                  // 1: a sample's loss is the mean probability's (scoring); 0: the members' mean loss
    public float LabelSmoothing;            // the loss and its gradient take the target y (1 - e) + e / 2; correctness the label
}

public static class Loss
{
    // ---- reference ----

    public static T BinaryCrossEntropyReference<T>(T logit, T label) where T : IFloatingPointIeee754<T> =>
        T.Max(logit, T.Zero) - logit * label + T.Log(T.One + T.Exp(-T.Abs(logit)));

    public static T GradientReference<T>(T logit, T label) where T : IFloatingPointIeee754<T> =>
        Activations.SigmoidReference(logit) - label;

    /// <summary>A prediction is a hit when p > 0.5, i.e. when the logit is positive.</summary>
    public static bool IsCorrectReference<T>(T logit, T label) where T : IFloatingPointIeee754<T> =>
        logit > T.Zero == label > T.CreateChecked(0.5);

    /// <summary>
    /// Label smoothing's target (RealMLP): y (1 - e) + e / 2, so a confident fit is no longer pushed to
    /// infinite logits; e = 0 gives y to the bit. Only training's loss and gradient take it.
    /// </summary>
    public static float SmoothedTarget(float label, float smoothing) => label * (1f - smoothing) + 0.5f * smoothing;

    /// <summary>
    /// One sample's metrics from its k members' logits: the members' mean loss, or (<paramref name="lossOfMean"/>)
    /// the loss of their mean probability; correct when the mean probability is on the label's side of 0.5.
    /// </summary>
    public static (T Loss, bool Correct) EnsembleSampleReference<T>(ReadOnlySpan<T> logits, T label, bool lossOfMean) where T : IFloatingPointIeee754<T>
    {
        if (logits.Length == 1)
            return (BinaryCrossEntropyReference(logits[0], label), IsCorrectReference(logits[0], label));
        T k = T.CreateChecked(logits.Length), loss = T.Zero, p = T.Zero, q = T.Zero;
        foreach (var z in logits)
        {
            loss += BinaryCrossEntropyReference(z, label);
            p += Activations.SigmoidReference(z);
            q += Activations.SigmoidReference(-z);
        }
        bool hit = label > T.CreateChecked(0.5);
        T meanLoss = -T.Log(T.Max(hit ? p / k : q / k, T.CreateChecked(1e-30)));
        return (lossOfMean ? meanLoss : loss / k, p / k > T.CreateChecked(0.5) == hit);
    }

    // ---- device function and kernel ----

    public static float BinaryCrossEntropy(float logit, float label) =>
        MathF.Max(logit, 0f) - logit * label + MathF.Log(1f + MathF.Exp(-MathF.Abs(logit)));

    /// <summary>dL/dz of one sample: the backward pass starts here.</summary>
    public static float LogitGradient(float logit, float label) => Activations.Sigmoid(logit) - label;

    /// <summary>1 when the prediction (logit above 0) matches the label, else 0: the per-sample accuracy slot.</summary>
    public static float Correct(float logit, float label) => (logit > 0f) == (label > 0.5f) ? 1f : 0f;

    /// <summary>One member's logit into its sample's sums for <see cref="EnsembleLoss"/>: its loss, p and 1 - p.</summary>
    public static void AddMember(float logit, float label, ref float lossSum, ref float pSum, ref float qSum)
    {
        lossSum += BinaryCrossEntropy(logit, label);
        pSum += Activations.Sigmoid(logit);
        qSum += Activations.Sigmoid(-logit);
    }

    /// <summary>
    /// A sample's loss from its members' sums (<see cref="EnsembleSampleReference"/>): with one member the
    /// logit's own; else the members' mean loss, or with <paramref name="lossOfMean"/> the mean probability's
    /// (from the sum of p for a hit, of 1 - p otherwise, each summed from its own sigmoid: no 1 - p rounding).
    /// </summary>
    public static float EnsembleLoss(int members, float firstLogit, float lossSum, float pSum, float qSum, float label, int lossOfMean)
    {
        if (members == 1)
            return BinaryCrossEntropy(firstLogit, label);
        if (lossOfMean == 0)
            return lossSum / members;
        return -MathF.Log(MathF.Max(label > 0.5f ? pSum / members : qSum / members, 1e-30f));
    }

    /// <summary>The members' mean probability, P(hit), from their sigmoids summed in member order (<see cref="AddMember"/>'s pSum).</summary>
    public static float MeanProbability(float pSum, int members) => pSum / members;

    /// <summary>1 when the members' mean probability is on the label's side of 0.5 (one member: its logit's sign).</summary>
    public static float EnsembleCorrect(int members, float firstLogit, float pSum, float label) =>
        members == 1 ? Correct(firstLogit, label) : (MeanProbability(pSum, members) > 0.5f) == (label > 0.5f) ? 1f : 0f;

    /// <summary>
    /// One row's members' sums toward its loss and accuracy, the one statement of a row's member loss for every
    /// engine (this kernel, the GPU epoch, the CPU epoch): in member order, the first logit (one member's loss and
    /// correctness are its own), and with more members their losses, p and 1 - p (<see cref="AddMember"/>).
    /// </summary>
    public struct MemberLoss
    {
        public float First, Loss, P, Q;

        /// <summary>Member 0's logit toward the (smoothed) target: its own loss and correctness where it is alone.</summary>
        public void AddFirst(int members, float z, float target)
        {
            First = z;
            Add(members, z, target);
        }

        /// <summary>Any other member's logit (a kernel that takes member 0 first keeps its member loop free of a test for it).</summary>
        public void Add(int members, float z, float target)
        {
            if (members > 1)
                AddMember(z, target, ref Loss, ref P, ref Q);
        }

        /// <summary>The row's loss (<see cref="EnsembleLoss"/>).</summary>
        public readonly float SampleLoss(int members, float target, int lossOfMean) => EnsembleLoss(members, First, Loss, P, Q, target, lossOfMean);

        /// <summary>The row's correctness (<see cref="EnsembleCorrect"/>).</summary>
        public readonly float SampleCorrect(int members, float label) => EnsembleCorrect(members, First, P, label);
    }

    public static void Kernel(LossArgs a, int blocked)
    {
        int k = Math.Max(1, a.Members);
        var range = WorkRange.OfThread(a.Rows, blocked);
        for (int r = range.Start; r < range.End; r += range.Step)
        {
            float y = a.Labels.Data[a.Labels.RowStart(r)], target = SmoothedTarget(y, a.LabelSmoothing);
            var sums = new MemberLoss();
            float first = a.Logits[r * k];
            a.LogitGradient[r * k] = LogitGradient(first, target) * a.GradientScale;
            sums.AddFirst(k, first, target);
            for (int i = 1; i < k; i++)
            {
                float z = a.Logits[r * k + i];
                a.LogitGradient[r * k + i] = LogitGradient(z, target) * a.GradientScale;
                sums.Add(k, z, target);
            }
            a.SampleLoss[a.Labels.Offset + r] = sums.SampleLoss(k, target, a.LossOfMean);
            a.SampleCorrect[a.Labels.Offset + r] = sums.SampleCorrect(k, y);
        }
    }

    /// <summary>P(hit) of each row: its k members' probabilities averaged, summed in member order (k = 1: the sigmoid).</summary>
    public static void MeanProbabilityKernel(ArrayView<float> logits, ArrayView<float> probabilities, int rows, int members, int blocked)
    {
        var range = WorkRange.OfThread(rows, blocked);
        for (int r = range.Start; r < range.End; r += range.Step)
        {
            float pSum = 0f;
            for (int i = 0; i < members; i++)
                pSum += Activations.Sigmoid(logits[r * members + i]);
            probabilities[r] = MeanProbability(pSum, members);
        }
    }

    /// <summary>d mean P(hit) / d z_i of each row-member: sigma'(z_i) / k, where the backward pass starts for explanations.</summary>
    public static void MeanProbabilitySlopeKernel(ArrayView<float> logits, ArrayView<float> slopes, int rowMembers, int members, int blocked)
    {
        var range = WorkRange.OfThread(rowMembers, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            float p = Activations.Sigmoid(logits[e]);
            slopes[e] = p * (1f - p) / members;
        }
    }
}

/// <summary>
/// The epoch's metrics summed on the device, so a GPU reads back two numbers instead of two per sample: one
/// group; each thread sums its contiguous slice in order (compensated, in float: GPUs and OpenCL without fp64
/// have no fast double), then the first thread sums the threads' partial sums in thread order. The same bits
/// each run.
/// </summary>
public static class SampleSums
{
    public static void Kernel(ArrayView<float> sampleLoss, ArrayView<float> sampleCorrect, int n, ArrayView<float> sums) =>
        Sum(sampleLoss, sampleCorrect, n, sums);

    /// <summary>Many runs' sums in one launch, a group a run: run g's first Runs[g].Rows slots at g stride, into sums[2 g], sums[2 g + 1]; each run's bits
    /// those of <see cref="Kernel"/> on its slots.</summary>
    public static void RunsKernel(ArrayView<float> sampleLoss, ArrayView<float> sampleCorrect, ArrayView<EpochRun> runs, int stride, ArrayView<float> sums)
    {
        int run = Grid.IdxX, n = runs[run].Rows;
        if (n > 0) // the whole group: no barrier is left behind
            Sum(sampleLoss.SubView((long)run * stride, n), sampleCorrect.SubView((long)run * stride, n), n, sums.SubView(2L * run, 2));
    }

    private static void Sum(ArrayView<float> sampleLoss, ArrayView<float> sampleCorrect, int n, ArrayView<float> sums)
    {
        var partial = SharedMemory.GetDynamic<float>(); // (2, threads)
        int thread = Group.IdxX, threads = Group.DimX;
        int perThread = (n + threads - 1) / threads, start = Math.Min(n, thread * perThread), end = Math.Min(n, start + perThread);
        partial[thread] = Compensated(sampleLoss, start, end);
        partial[threads + thread] = Compensated(sampleCorrect, start, end);
        Group.Barrier();
        if (thread == 0)
        {
            float lossSum = 0f, correctSum = 0f, lossCarry = 0f, correctCarry = 0f;
            for (int t = 0; t < threads; t++)
            {
                Add(ref lossSum, ref lossCarry, partial[t]);
                Add(ref correctSum, ref correctCarry, partial[threads + t]);
            }
            sums[0] = lossSum;
            sums[1] = correctSum;
        }
    }

    private static float Compensated(ArrayView<float> values, int start, int end)
    {
        float sum = 0f, carry = 0f;
        for (int i = start; i < end; i++)
            Add(ref sum, ref carry, values[i]);
        return sum;
    }

    /// <summary>Kahan's compensated addition: the low bits lost in sum + value are carried into the next one.</summary>
    private static void Add(ref float sum, ref float carry, float value)
    {
        float y = value - carry, t = sum + y;
        carry = (t - sum) - y;
        sum = t;
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, ArrayView<float>>? sampleSums;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<EpochRun>, int, ArrayView<float>>? runSampleSums;

    /// <summary>
    /// <see cref="SumSamples"/> of many runs in one launch: run r's first runs[r].Rows slots at r
    /// <paramref name="stride"/> into sums[2 r] and sums[2 r + 1] (a run of no rows is left alone).
    /// </summary>
    public void SumRunSamples(ArrayView<float> sampleLoss, ArrayView<float> sampleCorrect, ArrayView<EpochRun> runs, int runCount, int stride,
        ArrayView<float> sums)
    {
        Require(runCount >= 1 && runs.Length >= runCount && sums.Length >= 2L * runCount, "run sample sums: a run entry and two sums a run");
        Require(sampleLoss.Length >= (long)runCount * stride && sampleCorrect.Length >= (long)runCount * stride,
            $"run sample sums: the views must hold {runCount} runs of {stride} slots");
        int threads = Plan.OneGroupThreads;
        (runSampleSums ??= LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<EpochRun>, int, ArrayView<float>>(SampleSums.RunsKernel))(
            new KernelConfig(runCount, threads, SharedMemoryConfig.RequestDynamic<float>(2 * threads)), sampleLoss, sampleCorrect, runs, stride, sums);
    }

    /// <summary>sums[0] = the sum of the first n sample losses, sums[1] of their correctness flags, in one launch of one group.</summary>
    public void SumSamples(ArrayView<float> sampleLoss, ArrayView<float> sampleCorrect, int n, ArrayView<float> sums)
    {
        Require(n >= 1 && sampleLoss.Length >= n && sampleCorrect.Length >= n && sums.Length >= 2, $"sample sums: the views must hold {n} samples and 2 sums");
        int threads = Plan.OneGroupThreads;
        (sampleSums ??= LoadKernel<ArrayView<float>, ArrayView<float>, int, ArrayView<float>>(SampleSums.Kernel))(
            new KernelConfig(1, threads, SharedMemoryConfig.RequestDynamic<float>(2 * threads)), sampleLoss, sampleCorrect, n, sums);
    }
}

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, LossArgs, int>? loss;
    private Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int, int>? meanProbability, meanProbabilitySlope;

    public void BinaryCrossEntropy(in LossArgs a)
    {
        Require(a.Labels.Cols == 1, "loss: labels are one column");
        a.Labels.Check(a.Rows, "loss labels");
        long logits = (long)a.Rows * Math.Max(1, a.Members);
        Require(a.Logits.Length >= logits && a.LogitGradient.Length >= logits, "loss: logits and their gradient must hold the batch's (rows k)");
        Require(a.SampleLoss.Length >= a.Labels.Offset + a.Rows && a.SampleCorrect.Length >= a.Labels.Offset + a.Rows,
            "loss: per-sample outputs must hold offset + rows");
        var shape = Plan.ShapeFor(a.Rows);
        (loss ??= LoadKernel<LossArgs, int>(Loss.Kernel))(shape.Config, a, shape.BlockedFlag);
    }

    /// <summary>probabilities[r] = the mean of sigmoid(logits[r k + i]) over the k members, for rows [0, rows).</summary>
    public void MeanProbability(ArrayView<float> logits, ArrayView<float> probabilities, int rows, int members)
    {
        Require(members >= 1 && logits.Length >= (long)rows * members && probabilities.Length >= rows, "mean probability: views too short");
        var shape = Plan.ShapeFor(rows);
        (meanProbability ??= LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int>(Loss.MeanProbabilityKernel))(
            shape.Config, logits, probabilities, rows, members, shape.BlockedFlag);
    }

    /// <summary>slopes[e] = sigmoid'(logits[e]) / k for the first rows k logits.</summary>
    public void MeanProbabilitySlope(ArrayView<float> logits, ArrayView<float> slopes, int rows, int members)
    {
        Require(members >= 1 && logits.Length >= (long)rows * members && slopes.Length >= (long)rows * members, "mean probability slope: views too short");
        var shape = Plan.ShapeFor(rows * members);
        (meanProbabilitySlope ??= LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int>(Loss.MeanProbabilitySlopeKernel))(
            shape.Config, logits, slopes, rows * members, members, shape.BlockedFlag);
    }
}
