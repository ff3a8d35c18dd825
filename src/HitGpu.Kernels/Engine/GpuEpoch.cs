// The GPU epoch: a whole training epoch of a network in ONE launch of one group, and many networks' epochs in
// one launch of a group each (a run index: grid x). Made for a GPU, where the layered path's 10-14 launches a
// step cost ~60 us while the study network's step is 0.56 MFLOP: here a step costs a handful of group
// barriers. The group keeps the network's parameters and the batch's activations and deltas in shared
// memory (DevicePlan.GpuEpochDoesNotFit says whether they fit); Adam's moments stay in global memory, read once a
// step element by element.
//
// A step, every loop strided over the group's threads, a barrier where the next loop reads what this one wrote:
//   forward, layer by layer: one output (row-member, o) a work item (BatchedDense.PreActivation), dropout;
//   loss: one batch row a work item, its members' logits; dL/dz = (p - target) / (batch k);
//   backward, layer by layer from the logit:
//     A: g = dL/d(x r) and the layer below's dL/dz, one (row-member, input) a work item, old parameters;
//     B: each of the layer's W and b gradients summed over the rows in order by one work item (no atomics,
//        the same bits each run) and that parameter's Adam update at once; then, after a barrier (their sums
//        read the old r and s), r's and s's likewise.
// No gradient array: each gradient lives in a register from its sum to its Adam update.
//
// The formulas are BatchedDense's (its reference is the proof); the activations, dropout mask, loss and Adam
// are the same device functions the other paths call. The reference: CpuEpoch.TrainReference (NetworkReference.Step
// and Adam.UpdateReference per batch).
using ILGPU;

namespace HitGpu.Kernels;

/// <summary>What the GPU epoch's kernels read of the network's shape and of a group's batch, filled by the launcher.</summary>
public struct GpuEpochShape
{
    public int Layers, Members, ParameterCount;
    public int Stride;           // a row-member's activations in shared memory apart (GpuEpoch.Stride: the width, made odd)
    public int BatchRows;        // rows a group's shared activations hold: the batch size (training), a chunk (scoring)
    public int Inputs;           // layer 0's inputs: a feature row's length
}

/// <summary>One run's epoch: its rows and, for training, the global step of its first batch (the dropout mask) and its settings.</summary>
public struct EpochRun
{
    public int Rows;
    public int FirstStep;
    public StepSettings Settings;
}

/// <summary>The train kernel's arguments: one group per run, each run's tensors at run x their length.</summary>
public struct GpuEpochTrainArgs
{
    public ArrayView<float> Features;                  // (n, inputs) the rows every run's order indexes
    public ArrayView<float> Labels;                    // (n) 0 or 1
    public ArrayView<LayerShape> Layers;
    public GpuEpochShape Shape;
    public ArrayView<float> Parameters, AdamM, AdamV;  // (runs, count)
    public ArrayView<int> Order;                       // (runs, Positions) each run's rows in this epoch's order
    public ArrayView<float> SampleLoss, SampleCorrect; // (runs, Positions) per position in the order
    public ArrayView<EpochRun> Runs;                   // (runs)
    public ArrayView<AdamStep> Schedule;               // (runs, Steps) each run's Adam steps of this epoch
    public int Positions, Steps, BatchSize;
}

/// <summary>
/// The score and predict kernels' arguments: groups of ChunksPerRun per run, each a chunk of BatchRows rows.
/// With labels each row's loss (of the members' mean probability) and correctness, without them its P(hit)
/// into LossOrProbability.
/// </summary>
public struct GpuEpochScoreArgs
{
    public ArrayView<float> Features, Labels;          // labels empty: prediction
    public ArrayView<LayerShape> Layers;
    public GpuEpochShape Shape;
    public ArrayView<float> Parameters;                // (runs, count)
    public ArrayView<int> Order;                       // (runs, Positions) the rows to score; empty: rows [0, Rows) in place
    public ArrayView<float> LossOrProbability, SampleCorrect; // (runs, Positions); prediction: P(hit) into LossOrProbability
    public ArrayView<EpochRun> Runs;                   // (runs) their row counts
    public int Positions, ChunksPerRun;
}

/// <summary>
/// The views one group's batch pass works on: where its rows come from, its parameters, and its shared block:
/// the batch's feature rows (staged once a step), then the row-members' outputs and deltas, rows of an odd
/// stride (rm at rm Stride: neighbouring threads take neighbouring row-members, and an odd stride puts their
/// reads in different banks).
/// </summary>
internal struct GroupBatch
{
    public ArrayView<float> Features;
    public ArrayView<int> Order;       // empty: rows in place
    public int OrderBase, Start, Rows; // the batch: positions [Start, Start + Rows) of this run's order
    public ArrayView<LayerShape> Layers;
    public ArrayView<float> P;         // the parameters (shared memory while training, the run's global ones while scoring)
    public ArrayView<float> Work;      // shared: inputs (BatchRows, Inputs), outputs (BatchRows k, Stride), deltas (likewise)
    public int Outputs, Deltas;        // where the outputs and the deltas start in Work (the inputs at 0)
    public int Members, Stride, Inputs;

    public readonly int FeatureRow(int b) => Order.Length == 0 ? Start + b : Order[OrderBase + Start + b];
    public readonly int OutputRow(int rm) => Outputs + rm * Stride;
    public readonly int DeltaRow(int rm) => Deltas + rm * Stride;
    /// <summary>Where layer l's input row of row-member rm starts: its batch row's features (layer 0; the members share them) or the layer below's
    /// outputs.</summary>
    public readonly int InputRow(int l, int belowOutputs, int rm) => l == 0 ? rm / Members * Inputs : OutputRow(rm) + belowOutputs;
    /// <summary>How far apart member i's input rows of consecutive batch rows are.</summary>
    public readonly int InputStep(int l) => l == 0 ? Inputs : Members * Stride;
}

public static class GpuEpoch
{
    /// <summary>The shared row stride of a row-member's activations: the width, made odd.</summary>
    public static int Stride(ParameterLayout layout) => layout.ActivationWidth | 1;

    /// <summary>Shared floats a training group takes: the parameters, then a batch's inputs, outputs and deltas.</summary>
    public static long TrainSharedFloats(ParameterLayout layout, int batchRows) =>
        layout.Count + ScoreSharedFloats(layout, batchRows) + (long)batchRows * layout.Members * Stride(layout);

    /// <summary>Shared floats a scoring group takes: a chunk's inputs and the outputs of its row-members.</summary>
    public static long ScoreSharedFloats(ParameterLayout layout, int chunkRows) =>
        (long)chunkRows * layout.Inputs(0) + (long)chunkRows * layout.Members * Stride(layout);

    public static void TrainKernel(GpuEpochTrainArgs a)
    {
        var shared = SharedMemory.GetDynamic<float>();
        int thread = Group.IdxX, threads = Group.DimX, run = Grid.IdxX;
        var shape = a.Shape;
        int count = shape.ParameterCount, k = shape.Members;
        var p = shared.SubView(0, count);
        var parameters = a.Parameters.SubView((long)run * count, count);
        var m = a.AdamM.SubView((long)run * count, count);
        var v = a.AdamV.SubView((long)run * count, count);
        for (int i = thread; i < count; i += threads)
            p[i] = parameters[i];

        var job = a.Runs[run];
        int outputs = shape.BatchRows * shape.Inputs, rowMembers = shape.BatchRows * k * shape.Stride;
        var batch = new GroupBatch
        {
            Features = a.Features, Order = a.Order, OrderBase = run * a.Positions, Layers = a.Layers, P = p, Work = shared.SubView(count),
            Outputs = outputs, Deltas = outputs + rowMembers, Members = k, Stride = shape.Stride, Inputs = shape.Inputs,
        };
        int steps = (job.Rows + a.BatchSize - 1) / a.BatchSize;
        for (int step = 0; step < steps; step++)
        {
            batch.Start = step * a.BatchSize;
            batch.Rows = Math.Min(a.BatchSize, job.Rows - batch.Start);
            int globalStep = job.FirstStep + step;
            StageInputs(batch); // its barrier also covers the parameters' copy, before the first step
            Forward(batch, shape.Layers, job.Settings, globalStep, dropout: 1);
            int logitAt = a.Layers[shape.Layers - 1].OutputOffset;
            float scale = 1f / (batch.Rows * k); // the loss: a mean over the batch and the members
            for (int b = thread; b < batch.Rows; b += threads)
            {
                int position = batch.OrderBase + batch.Start + b;
                float y = a.Labels[batch.FeatureRow(b)], target = Loss.SmoothedTarget(y, job.Settings.LabelSmoothing);
                var sums = SumMembers(batch, b, logitAt, target, gradientScale: scale);
                a.SampleLoss[position] = sums.SampleLoss(k, target, lossOfMean: 0);
                a.SampleCorrect[position] = sums.SampleCorrect(k, y);
            }
            Group.Barrier();
            var adam = a.Schedule[run * a.Steps + step];
            for (int l = shape.Layers - 1; l >= 0; l--)
            {
                var layer = a.Layers[l];
                int belowOutputs = l > 0 ? a.Layers[l - 1].OutputOffset : 0;
                if (l > 0 || layer.HasInputScale)
                {
                    InputGradients(batch, l, job.Settings, globalStep);
                    Group.Barrier();
                }
                WeightAndBiasUpdates(batch, layer, l, belowOutputs, m, v, adam);
                if (layer.HasInputScale || layer.HasOutputScale)
                {
                    Group.Barrier();
                    ScaleUpdates(batch, layer, l, belowOutputs, m, v, adam);
                }
                // No barrier: the layer below reads its own parameters and deltas, which these updates do not touch.
            }
            Group.Barrier();
        }
        for (int i = thread; i < count; i += threads)
            parameters[i] = p[i];
    }

    /// <summary>Each row's loss and correctness (or P(hit) without labels), one chunk of a run's rows a group, parameters from global memory.</summary>
    public static void ScoreKernel(GpuEpochScoreArgs a)
    {
        int thread = Group.IdxX, threads = Group.DimX;
        int run = Grid.IdxX / a.ChunksPerRun, chunk = Grid.IdxX - run * a.ChunksPerRun;
        var shape = a.Shape;
        int k = shape.Members, rows = a.Runs[run].Rows, start = chunk * shape.BatchRows;
        if (start >= rows)
            return; // the whole group: no barrier is left behind
        var batch = new GroupBatch
        {
            Features = a.Features, Order = a.Order, OrderBase = run * a.Positions, Start = start, Rows = Math.Min(shape.BatchRows, rows - start),
            Layers = a.Layers, P = a.Parameters.SubView((long)run * shape.ParameterCount, shape.ParameterCount), Work = SharedMemory.GetDynamic<float>(),
            Outputs = shape.BatchRows * shape.Inputs, Members = k, Stride = shape.Stride, Inputs = shape.Inputs,
        };
        StageInputs(batch);
        Forward(batch, shape.Layers, new StepSettings(), 0, dropout: 0);
        int logitAt = a.Layers[shape.Layers - 1].OutputOffset;
        for (int b = thread; b < batch.Rows; b += threads)
        {
            int position = batch.OrderBase + start + b;
            if (a.Labels.Length == 0)
            {
                a.LossOrProbability[position] = Loss.MeanProbability(SumMembers(batch, b, logitAt, -1f, 0f).P, k);
                continue;
            }
            float y = a.Labels[batch.FeatureRow(b)];
            var sums = SumMembers(batch, b, logitAt, y, 0f);
            a.LossOrProbability[position] = sums.SampleLoss(k, y, lossOfMean: 1);
            a.SampleCorrect[position] = sums.SampleCorrect(k, y);
        }
    }

    /// <summary>The batch's feature rows (through the order) into the shared inputs block, then a barrier.</summary>
    private static void StageInputs(in GroupBatch batch)
    {
        int n = batch.Inputs;
        for (int e = Group.IdxX; e < batch.Rows * n; e += Group.DimX)
        {
            int b = e / n;
            batch.Work[e] = batch.Features[batch.FeatureRow(b) * n + e - b * n];
        }
        Group.Barrier();
    }

    /// <summary>
    /// Every member's forward pass of the batch into the output rows, layer by layer with a barrier between:
    /// a work item is one output o of four row-members of one member (<see cref="FourLanes"/>), the weight row read
    /// once for the four; each sum starts from the bias (<see cref="SumOrder.FromBias"/>), as
    /// <see cref="BatchedDense.InputSum"/> adds, and ends in <see cref="BatchedDense.StoreOutput"/>. Hidden outputs take the dropout mask of (step, rm) when
    /// <paramref name="dropout"/> is 1.
    /// </summary>
    private static void Forward(in GroupBatch batch, int layers, in StepSettings settings, int step, int dropout)
    {
        int thread = Group.IdxX, threads = Group.DimX, k = batch.Members, rowMembers = batch.Rows * k, lanes = FourLanes.Of(rowMembers, k);
        int belowOutputs = 0;
        for (int l = 0; l < layers; l++)
        {
            var layer = batch.Layers[l];
            int n = layer.InputsPerGroup, total = lanes * layer.Outputs;
            for (int e = thread; e < total; e += threads)
            {
                int o = e / lanes, q = e - o * lanes;
                if (q >= rowMembers)
                    continue;
                // 64-bit positions (a 32-bit index widened after its sum costs an IMAD.WIDE a load).
                int i = q % k, first = layer.FirstInput(o);
                long w = layer.Weight(i) + o * n;
                long x0 = batch.InputRow(l, belowOutputs, q) + first, x1 = batch.InputRow(l, belowOutputs, FourLanes.Or(q, 1, lanes, rowMembers)) + first;
                long x2 = batch.InputRow(l, belowOutputs, FourLanes.Or(q, 2, lanes, rowMembers)) + first,
                    x3 = batch.InputRow(l, belowOutputs, FourLanes.Or(q, 3, lanes, rowMembers)) + first;
                float bias = batch.P[layer.Bias(i) + o];
                var sums = FourLanes.Dots<SharedLaneViews>(BatchedDense.SumStart(layer, bias, SumOrder.FromBias), batch.Work, x0, x1, x2, x3, batch.P, w,
                    layer.HasInputScale ? layer.InputScale(i) + first : -1, n);
                float scale = layer.HasOutputScale ? batch.P[layer.OutputScale(i) + o] : 1f;
                for (int c = 0; c < 4 && q + c * lanes < rowMembers; c++)
                {
                    int rm = q + c * lanes;
                    float keep = dropout != 0 && layer.DropsOutputs != 0 ? Dropout.Factor(settings.DropoutSeed, step, rm, l, o, settings.DropoutRate) : 1f;
                    BatchedDense.StoreOutput(new WorkRow(batch.Work, batch.OutputRow(rm)), layer, o, sums[c], bias, scale, SumOrder.FromBias, keep);
                }
            }
            belowOutputs = layer.OutputOffset;
            Group.Barrier();
        }
    }

    /// <summary>
    /// Batch row b's members' logits summed as <see cref="Loss.AddMember"/> does (with a target; without one,
    /// <paramref name="target"/> below 0, their sigmoids only); with a <paramref name="gradientScale"/> above 0
    /// each member's dL/dz = (p - target) scale into its delta row.
    /// </summary>
    private static Loss.MemberLoss SumMembers(in GroupBatch batch, int b, int logitAt, float target, float gradientScale)
    {
        int k = batch.Members;
        var sums = new Loss.MemberLoss();
        for (int i = 0; i < k; i++)
        {
            int rm = b * k + i;
            float z = batch.Work[batch.OutputRow(rm) + logitAt];
            if (target < 0f)
            {
                sums.P += Activations.Sigmoid(z);
                continue;
            }
            if (gradientScale > 0f)
                batch.Work[batch.DeltaRow(rm) + logitAt] = Loss.LogitGradient(z, target) * gradientScale;
            if (i == 0)
                sums.AddFirst(k, z, target);
            else
                sums.Add(k, z, target);
        }
        return sums;
    }

    /// <summary>
    /// Phase A of layer l's backward pass, a work item one input j of four row-members of one member
    /// (<see cref="FourLanes"/>): g = sum_o (dz_o s_o) W_oj (the gradient at x r; kept in the delta row's
    /// scaled-input slot when the layer has r, for r's gradient), and for l above 0 the layer below's
    /// dL/dz = g r f'(x) times its dropout mask.
    /// </summary>
    private static void InputGradients(in GroupBatch batch, int l, in StepSettings settings, int step)
    {
        int thread = Group.IdxX, threads = Group.DimX, k = batch.Members, rowMembers = batch.Rows * k, lanes = FourLanes.Of(rowMembers, k);
        var layer = batch.Layers[l];
        var below = batch.Layers[l > 0 ? l - 1 : 0];
        int nIn = layer.Inputs, perGroup = layer.InputsPerGroup, total = lanes * nIn;
        for (int e = thread; e < total; e += threads)
        {
            int j = e / lanes, q = e - j * lanes;
            if (q >= rowMembers)
                continue;
            int i = q % k, group = j / perGroup, first = group * layer.OutputsPerGroup, end = first + layer.OutputsPerGroup;
            long w = layer.Weight(i) + j - group * perGroup;
            long d0 = batch.DeltaRow(q) + layer.OutputOffset, d1 = batch.DeltaRow(FourLanes.Or(q, 1, lanes, rowMembers)) + layer.OutputOffset;
            long d2 = batch.DeltaRow(FourLanes.Or(q, 2, lanes, rowMembers)) + layer.OutputOffset,
                d3 = batch.DeltaRow(FourLanes.Or(q, 3, lanes, rowMembers)) + layer.OutputOffset;
            var g = FourLanes.Transposed(batch.Work, d0, d1, d2, d3, batch.P, w, perGroup, layer.HasOutputScale ? layer.OutputScale(i) : -1, first, end);
            float r = layer.HasInputScale ? batch.P[layer.InputScale(i) + j] : 1f;
            for (int c = 0; c < 4 && q + c * lanes < rowMembers; c++)
            {
                int rm = q + c * lanes;
                if (layer.HasInputScale)
                    batch.Work[batch.DeltaRow(rm) + layer.ScaledInputOffset + j] = g[c];
                if (l == 0)
                    continue;
                int row = batch.OutputRow(rm);
                float slope = Activations.Derivative(below.Activation, batch.Work[row + below.OutputOffset + j],
                    below.KeepsPreActivation ? batch.Work[row + below.PreActivationOffset + j] : 0f);
                float mask = below.DropsOutputs != 0 ? Dropout.Factor(settings.DropoutSeed, step, rm, l - 1, j, settings.DropoutRate) : 1f;
                batch.Work[batch.DeltaRow(rm) + below.OutputOffset + j] = g[c] * r * slope * mask;
            }
        }
    }

    /// <summary>sum over the batch rows b of work[at + b step] work[from + b fromStep]: one member's terms of a gradient, in row order.</summary>
    private static float SumOverRows(ArrayView<float> work, int rows, int at, int step, int from, int fromStep)
    {
        float sum = 0f;
        for (int b = 0; b < rows; b++, at += step, from += fromStep)
            sum += work[at] * work[from];
        return sum;
    }

    /// <summary>Four such sums sharing the first factor: work[at + b step] times work[x_c + b xStep] for the four columns x_c.</summary>
    private static Sums4 SumOverRows4(ArrayView<float> work, int rows, long at, int step, long x0, long x1, long x2, long x3, int xStep)
    {
        var sums = new Sums4();
        for (int b = 0; b < rows; b++, at += step, x0 += xStep, x1 += xStep, x2 += xStep, x3 += xStep)
            FourLanes.Term(ref sums, work, work, work, work, x0, x1, x2, x3, work[at]);
        return sums;
    }

    /// <summary>
    /// Phase B of layer l: a work item four W elements of one output row (inputs j, j + lanes, ...; every
    /// member's, or the shared ones: then summed member by member) or one b element; each gradient summed over
    /// the batch rows in order, then its Adam update. A member's weight terms share its s_o and r_j, which
    /// multiply its sum. W's sums read r and s, which are updated only after the next barrier (<see cref="ScaleUpdates"/>).
    /// </summary>
    private static void WeightAndBiasUpdates(in GroupBatch batch, in LayerShape layer, int l, int belowOutputs, ArrayView<float> m,
        ArrayView<float> v, in AdamStep adam)
    {
        int thread = Group.IdxX, threads = Group.DimX, k = batch.Members, rows = batch.Rows, rowStep = k * batch.Stride;
        int n = layer.InputsPerGroup, nOut = layer.Outputs, lanes = FourLanes.Of(n, 1);
        int weightOwners = layer.WeightStride > 0 ? k : 1, biasOwners = layer.BiasStride > 0 ? k : 1;
        int weightItems = weightOwners * nOut * lanes, total = weightItems + biasOwners * nOut;
        for (int e = thread; e < total; e += threads)
        {
            if (e >= weightItems)
            {
                int owner = (e - weightItems) / nOut, o = e - weightItems - owner * nOut;
                int firstMember = biasOwners > 1 ? owner : 0, lastMember = biasOwners > 1 ? owner : k - 1;
                float gradient = 0f;
                for (int i = firstMember; i <= lastMember; i++)
                    for (int b = 0, d = batch.DeltaRow(i) + layer.OutputOffset + o; b < rows; b++, d += rowStep)
                        gradient += batch.Work[d];
                Update(batch.P, m, v, layer.BiasOffset + e - weightItems, gradient, adam);
                continue;
            }
            int ownerOf = e / (nOut * lanes), rest = e - ownerOf * nOut * lanes, out0 = rest / lanes, q = rest - out0 * lanes;
            int start = layer.FirstInput(out0);
            int firstOwner = weightOwners > 1 ? ownerOf : 0, lastOwner = weightOwners > 1 ? ownerOf : k - 1;
            var gradients = new Sums4();
            for (int i = firstOwner; i <= lastOwner; i++)
            {
                int x = batch.InputRow(l, belowOutputs, i) + start;
                var sums = SumOverRows4(batch.Work, rows, batch.DeltaRow(i) + layer.OutputOffset + out0, rowStep,
                    x + q, x + FourLanes.Or(q, 1, lanes, n), x + FourLanes.Or(q, 2, lanes, n), x + FourLanes.Or(q, 3, lanes, n), batch.InputStep(l));
                float s = layer.HasOutputScale ? batch.P[layer.OutputScale(i) + out0] : 1f;
                for (int c = 0; c < 4; c++)
                    gradients.Set(c, gradients[c] + sums[c] * s * (layer.HasInputScale
                        ? batch.P[layer.InputScale(i) + start + FourLanes.Or(q, c, lanes, n)] : 1f));
            }
            for (int c = 0; c < 4 && q + c * lanes < n; c++)
                Update(batch.P, m, v, layer.Weight(ownerOf) + out0 * n + q + c * lanes, gradients[c], adam);
        }
    }

    /// <summary>Phase B of layer l, after W's: each member's r (sum of g x) and s (sum of dz times the sum before s), then their Adam updates.</summary>
    private static void ScaleUpdates(in GroupBatch batch, in LayerShape layer, int l, int belowOutputs, ArrayView<float> m, ArrayView<float> v,
        in AdamStep adam)
    {
        int thread = Group.IdxX, threads = Group.DimX, k = batch.Members, rows = batch.Rows, rowStep = k * batch.Stride;
        int nIn = layer.Inputs, nOut = layer.Outputs;
        int inputScales = layer.HasInputScale ? k * nIn : 0, total = inputScales + (layer.HasOutputScale ? k * nOut : 0);
        for (int e = thread; e < total; e += threads)
        {
            float gradient;
            int at;
            if (e < inputScales)
            {
                int i = e / nIn, j = e - i * nIn;
                gradient = SumOverRows(batch.Work, rows, batch.DeltaRow(i) + layer.ScaledInputOffset + j, rowStep,
                    batch.InputRow(l, belowOutputs, i) + j, batch.InputStep(l));
                at = layer.InputScaleOffset + e;
            }
            else
            {
                int io = e - inputScales, i = io / nOut, o = io - i * nOut;
                gradient = SumOverRows(batch.Work, rows, batch.DeltaRow(i) + layer.OutputOffset + o, rowStep,
                    batch.OutputRow(i) + layer.PreScaleOffset + o, rowStep);
                at = layer.OutputScaleOffset + io;
            }
            Update(batch.P, m, v, at, gradient, adam);
        }
    }

    private static void Update(ArrayView<float> p, ArrayView<float> m, ArrayView<float> v, int at, float gradient, in AdamStep adam)
    {
        float mp = m[at], vp = v[at];
        p[at] = Adam.UpdateOne(ref mp, ref vp, p[at], gradient, adam);
        m[at] = mp;
        v[at] = vp;
    }
}

/// <summary>The GPU epoch's row: a row-member's values in its row of the group's shared work memory, at the layer's offsets.</summary>
internal readonly struct WorkRow(ArrayView<float> work, int row) : IOutputRow
{
    public void PreScale(in LayerShape layer, int o, float sum) => work[row + layer.PreScaleOffset + o] = sum;

    public void PreActivation(in LayerShape layer, int o, float z) => work[row + layer.PreActivationOffset + o] = z;

    public void Output(in LayerShape layer, int o, float y) => work[row + layer.OutputOffset + o] = y;
}
