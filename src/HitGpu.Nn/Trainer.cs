// Training: split, fit the preprocessing on the training part, then epochs of shuffled mini-batches with Adam.
// The data stays on the device for the whole run. Per epoch, on the CPU accelerator the host uploads one
// shuffled order and reads back one loss and one correctness flag per sample; on a GPU the order is permuted
// and the metrics summed there. Nothing crosses per batch.
using System.Diagnostics;
using HitGpu.Kernels;

namespace HitGpu.Nn;

public enum LearningRateSchedule { Constant, Cosine }

/// <summary>The validation figure that decides the epoch kept: the lower loss, or the higher accuracy (ties: the earlier epoch).</summary>
public enum SelectionMetric { Loss, Accuracy }

/// <summary>A learned per-feature embedding before the MLP (TabM, after Gorishniy et al. 2022).</summary>
public enum NumericEmbedding
{
    None,
    /// <summary>Piecewise-linear embeddings, version B: per feature a linear embedding of its score plus a linear map of its piecewise-linear encoding, the
    /// latter starting at zero.</summary>
    Piecewise,
    /// <summary>Periodic embeddings (RealMLP's PBLD without the raw value): per feature cos(2 pi w x + b) for learned frequencies, a linear map and a
    /// ReLU.</summary>
    Periodic,
}

/// <summary>
/// How to train. The defaults are the configuration chosen on validation accuracy over the six decades
/// (docs/ACCURACY.md): three independent 15-64-32-1 members trained in one pass, quantile-normalised inputs,
/// dropout 0.15, 30 epochs of Adam at 1e-3, batch 32. <see cref="Study"/> is the original study's setup.
/// </summary>
public sealed record TrainingOptions
{
    public int Epochs { get; init; } = 30;
    public int BatchSize { get; init; } = 32;
    public IReadOnlyList<int> Hidden { get; init; } = [64, 32];
    public float LearningRate { get; init; } = 1e-3f;
    /// <summary>Decoupled weight decay (AdamW); 0 = plain Adam.</summary>
    public float WeightDecay { get; init; } = 0f;
    /// <summary>After the warm-up: constant, or cosine decay to zero over the remaining steps.</summary>
    public LearningRateSchedule Schedule { get; init; } = LearningRateSchedule.Constant;
    /// <summary>Epochs over which the learning rate rises linearly from ~0 to its value; 0 = none.</summary>
    public int WarmupEpochs { get; init; } = 0;
    public int Seed { get; init; } = 0;
    public double ValidationFraction { get; init; } = 0.15;
    public double TestFraction { get; init; } = 0.15;
    /// <summary>Stop after this many epochs without a lower validation loss, and keep the best epoch's weights; 0 = off.</summary>
    public int EarlyStoppingPatience { get; init; } = 0;
    /// <summary>Members trained together in one network, each on the same batches; their probabilities are averaged.</summary>
    public int EnsembleSize { get; init; } = 3;
    /// <summary>What the members share (TabM): nothing (independent networks), all but adapters (batch), or all but the input scale and head (mini).</summary>
    public EnsembleKind EnsembleKind { get; init; } = EnsembleKind.Independent;
    /// <summary>A learned embedding of each feature before the MLP; with one, the inputs are its scores and piecewise encodings whatever <see
    /// cref="Inputs"/> says.</summary>
    public NumericEmbedding Embedding { get; init; } = NumericEmbedding.None;
    /// <summary>Quantile bins of the piecewise-linear embedding.</summary>
    public int EmbeddingBins { get; init; } = 48;
    /// <summary>Outputs per feature of the embedding.</summary>
    public int EmbeddingDimension { get; init; } = 16;
    /// <summary>Learned frequencies per feature of the periodic embedding.</summary>
    public int EmbeddingFrequencies { get; init; } = 16;
    /// <summary>Feature transforms applied before standardisation.</summary>
    public FeatureEncoding Encoding { get; init; } = FeatureEncoding.Raw;
    /// <summary>Label smoothing e (RealMLP): training targets y (1 - e) + e / 2; 0 = off. Validation and test read the true labels.</summary>
    public float LabelSmoothing { get; init; } = 0f;
    /// <summary>What early stopping (and the weights kept) watch on the validation part: its loss, or its accuracy (RealMLP's best-epoch selection by the
    /// metric).</summary>
    public SelectionMetric SelectOn { get; init; } = SelectionMetric.Loss;
    /// <summary>Probability of dropping each hidden unit during training (inverted dropout; off at evaluation).</summary>
    public float Dropout { get; init; } = 0.15f;
    /// <summary>How each encoded feature becomes network inputs before standardising: as it is, quantile-normalised, or piecewise-linear.</summary>
    public InputTransform Inputs { get; init; } = InputTransform.Quantile;
    /// <summary>Drop the songs that repeat an earlier one (same uri, or the same features and target) before splitting.</summary>
    public bool DropDuplicates { get; init; } = false;
    /// <summary>Keep the mean of the weights after each of the last this many epochs (weight averaging); 0 = the last epoch's.</summary>
    public int AverageLastEpochs { get; init; } = 0;
    /// <summary>
    /// For tuning (<c>hitgpu accuracy --tune</c>): early stopping and the kept epoch see one half of the
    /// validation part (stratified, seeded), and <see cref="TrainingResult.Validation"/> is the other half's,
    /// which nothing was chosen on; so a candidate that selects its epoch on validation is not judged by the
    /// very songs it selected on. Off: both are the whole validation part.
    /// </summary>
    public bool HoldOutHalfOfValidation { get; init; } = false;
    /// <summary>Shuffle each epoch on the device (a seeded permutation kernel) or on the host; null: the accelerator's preference (<see
    /// cref="DevicePlan.ShufflesOnDevice"/>).</summary>
    public bool? ShuffleOnDevice { get; init; }
    /// <summary>Layered, the CPU epoch or the GPU epoch; null: what the accelerator prefers for the network (<see cref="DevicePlan.PathFor"/>).</summary>
    public TrainingPath? Path { get; init; }

    /// <summary>The original Keras study: one 15-64-32-1 network, Adam 1e-3, batch 32, 20 epochs, raw standardised features.</summary>
    public static readonly TrainingOptions Study = new()
    {
        Epochs = 20, BatchSize = 32, Hidden = [64, 32], LearningRate = 1e-3f, WeightDecay = 0f, Schedule = LearningRateSchedule.Constant,
        WarmupEpochs = 0, EarlyStoppingPatience = 0, EnsembleSize = 1, Encoding = FeatureEncoding.Raw, Inputs = InputTransform.Standard, Dropout = 0f,
    };

    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentException($"epochs must be at least 1, got {Epochs}");
        if (BatchSize < 1) throw new ArgumentException($"batch size must be at least 1, got {BatchSize}");
        if (Hidden.Any(h => h < 1)) throw new ArgumentException($"hidden widths must be positive, got {string.Join(",", Hidden)}");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ArgumentException($"learning rate must be a positive number, got {LearningRate}");
        if (!(WeightDecay >= 0) || !float.IsFinite(WeightDecay)) throw new ArgumentException($"weight decay must be 0 or more, got {WeightDecay}");
        if (WarmupEpochs < 0 || WarmupEpochs >= Epochs) throw new
            ArgumentException($"warm-up epochs must be 0 or more and fewer than the epochs, got {WarmupEpochs}");
        if (EarlyStoppingPatience < 0) throw new ArgumentException($"early-stopping patience must be 0 (off) or more, got {EarlyStoppingPatience}");
        if (!(Dropout >= 0f && Dropout < 1f)) throw new ArgumentException($"dropout must be in [0, 1), got {Dropout}");
        if (!(LabelSmoothing >= 0f && LabelSmoothing < 1f)) throw new ArgumentException($"label smoothing must be in [0, 1), got {LabelSmoothing}");
        if (!Enum.IsDefined(SelectOn)) throw new ArgumentException($"unknown selection metric {SelectOn}");
        Inputs.Validate();
        if (AverageLastEpochs < 0 || AverageLastEpochs > Epochs)
            throw new ArgumentException($"epochs to average must be 0 (off) to the epochs ({Epochs}), got {AverageLastEpochs}");
        if (AverageLastEpochs > 0 && EarlyStoppingPatience > 0)
            throw new ArgumentException("weight averaging and early stopping each choose the weights to keep: use one of them");
        if (EnsembleSize < 1 || EnsembleSize > ParameterLayout.MaxMembers)
            throw new ArgumentException($"an ensemble has 1 to {ParameterLayout.MaxMembers} members, got {EnsembleSize}");
        if (!Enum.IsDefined(EnsembleKind)) throw new ArgumentException($"unknown ensemble kind {EnsembleKind}");
        if (!Enum.IsDefined(Embedding)) throw new ArgumentException($"unknown embedding {Embedding}");
        if (Embedding != NumericEmbedding.None && (EmbeddingBins < 1 || EmbeddingBins >= Preprocessing.KnotCount))
            throw new ArgumentException($"embedding bins must be 1 to {Preprocessing.KnotCount - 1}, got {EmbeddingBins}");
        if (Embedding != NumericEmbedding.None && EmbeddingDimension < 1)
            throw new ArgumentException($"the embedding dimension must be at least 1, got {EmbeddingDimension}");
        if (Embedding == NumericEmbedding.Periodic && EmbeddingFrequencies < 1)
            throw new ArgumentException($"the periodic embedding needs at least 1 frequency, got {EmbeddingFrequencies}");
        if (ValidationFraction <= 0 || TestFraction <= 0 || ValidationFraction + TestFraction >= 1)
            throw new ArgumentException($"validation ({ValidationFraction}) and test ({TestFraction}) splits must be above 0 and add up to less than 1");
    }

    /// <summary>The learning rate at step t (from 1) of <paramref name="totalSteps"/>, with <paramref name="stepsPerEpoch"/> steps an epoch.</summary>
    public float LearningRateAt(int t, int totalSteps, int stepsPerEpoch)
    {
        int warmup = WarmupEpochs * stepsPerEpoch;
        if (t <= warmup)
            return LearningRate * t / warmup;
        if (Schedule == LearningRateSchedule.Constant)
            return LearningRate;
        double progress = (double)(t - warmup) / Math.Max(1, totalSteps - warmup);
        return (float)(LearningRate * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, progress))));
    }

    /// <summary>How each step runs: Adam (Keras' constants), the weight decay, and the dropout masks of this seed (each row-member its own).</summary>
    public StepSettings StepSettings => StepSettings.Default with
    {
        WeightDecay = WeightDecay, DropoutRate = Dropout, DropoutSeed = (uint)Seed * 2654435761u + 12345u, LabelSmoothing = LabelSmoothing,
    };

    /// <summary>The transform of the encoded features: the embedding's inputs when there is one, else <see cref="Inputs"/>.</summary>
    public InputTransform InputTransform => Embedding == NumericEmbedding.Piecewise ? InputTransform.Embedding(EmbeddingBins) : Inputs;

    /// <summary>The network these options train on an encoding's features: the embedding if any, hidden widths, members and kind.</summary>
    public ParameterLayout LayoutFor(FeatureEncoding encoding) => Embedding switch
    {
        NumericEmbedding.Piecewise => ParameterLayout.WithEmbedding(encoding.Width, InputTransform.InputsPerFeature, EmbeddingDimension, Hidden,
            EnsembleKind, EnsembleSize),
        NumericEmbedding.Periodic => ParameterLayout.WithPeriodicEmbedding(Preprocessing.NetworkInputsFor(encoding, InputTransform), EmbeddingFrequencies,
            EmbeddingDimension, Hidden, EnsembleKind, EnsembleSize),
        _ => ParameterLayout.ForClassifier(Preprocessing.NetworkInputsFor(encoding, InputTransform), Hidden, EnsembleKind, EnsembleSize),
    };
}

/// <summary>
/// One epoch of the network (all its members): the training loss is the members' mean loss, the validation
/// loss that of their mean probability; accuracies are the mean probability's.
/// </summary>
public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, double ValidationLoss, double ValidationAccuracy, double Seconds);

/// <summary>
/// The trained model (the weights of the kept epoch), the per-epoch history, the validation part's
/// evaluation of the averaged probabilities (what tuning may look at), the test part's (read once, at the
/// end), and why training stopped before its last epoch, if it did.
/// </summary>
public sealed record TrainingResult(
    HitModel Model, IReadOnlyList<EpochMetrics> History, int KeptEpoch, Evaluation Validation, Evaluation Test,
    SplitIndices Split, double Seconds, string? StoppedEarly, bool Diverged)
{
    public double TestLoss => Test.LogLoss;
    public double TestAccuracy => Test.Accuracy;

    /// <summary>The epochs alone (training and per-epoch validation), without loading, splitting and the final test.</summary>
    public double LoopSeconds => History.Sum(h => h.Seconds);

    /// <summary>Songs that appear more than once, and how many cross the parts (or were dropped).</summary>
    public DuplicateReport Duplicates { get; init; } = new(0, 0, 0);

    /// <summary>The path that trained it (<see cref="DevicePlan.PathFor"/>'s choice for the network and batch, or the one asked for).</summary>
    public TrainingPath Path { get; init; }

    public int TrainRows => Split.Train.Length;
    public int ValidationRows => Split.Validation.Length;
    public int TestRows => Split.Test.Length;
}

/// <summary>One of many independent trainings (<see cref="Trainer.TrainMany"/>): its data (rows and split come from its options' seed and fractions) and
/// options.</summary>
public sealed record TrainingRun(SongTable Data, TrainingOptions Options);

public static partial class Trainer
{
    /// <summary>
    /// Trains independent runs and returns one result per run, in their order. Runs the device plan trains on
    /// the GPU epoch (a GPU's path for networks that fit, <see cref="DevicePlan.PathFor"/>) that share a network
    /// shape and batch size train together: one launch an epoch for all, a group a run, each run's result the
    /// one training it alone on that path gives. The others (the CPU accelerator's, networks too large for a
    /// group) train one after another through <see cref="Train(ComputeDevice, SongTable, TrainingOptions, Action{EpochMetrics}?, Action{int, int, int}?,
    /// Action{string}?, CancellationToken)"/>,
    /// bit for bit as alone. <paramref name="onRunDone"/> hears each run's index and result as it finishes
    /// (a group's together).
    /// </summary>
    public static IReadOnlyList<TrainingResult> TrainMany(ComputeDevice device, IReadOnlyList<TrainingRun> runs,
        Action<int, TrainingResult>? onRunDone = null, CancellationToken cancellationToken = default)
    {
        foreach (var run in runs)
            run.Options.Validate(); // every run's options checked before the first trains
        var results = new TrainingResult[runs.Count];
        var groups = new List<List<(int Index, PreparedRun Run)>>();
        var alone = new List<int>();
        for (int i = 0; i < runs.Count; i++)
        {
            var options = runs[i].Options;
            if (!TrainsOnTheGpuEpoch(device, options))
            {
                alone.Add(i);
                continue;
            }
            var prepared = Prepare(runs[i].Data, options, onWarning: null);
            var group = groups.FirstOrDefault(g => g[0].Run.Options.BatchSize == options.BatchSize && SameShape(g[0].Run.Layout, prepared.Layout));
            if (group is null)
                groups.Add(group = []);
            group.Add((i, prepared));
        }
        foreach (var group in groups)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var trained = TrainGroup(device, group.Select(g => g.Run).ToArray(), cancellationToken);
            for (int g = 0; g < group.Count; g++)
            {
                results[group[g].Index] = trained[g];
                onRunDone?.Invoke(group[g].Index, trained[g]);
            }
        }
        foreach (int i in alone)
        {
            cancellationToken.ThrowIfCancellationRequested();
            results[i] = Train(device, runs[i].Data, runs[i].Options, cancellationToken: cancellationToken);
            onRunDone?.Invoke(i, results[i]);
        }
        return results;
    }

    /// <summary>
    /// Whether the plan trains a run of these options on the GPU epoch at its full batch size (one that only a
    /// smaller part than a batch would let fit trains alone, where Train decides it, and refuses it if asked for).
    /// </summary>
    private static bool TrainsOnTheGpuEpoch(ComputeDevice device, TrainingOptions options)
    {
        try
        {
            return device.Plan.PathFor(options.Path, options.LayoutFor(options.Encoding), options.BatchSize) == TrainingPath.GpuEpoch;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>
    /// Trains the network (all its members at once) on one stratified split. <paramref name="onEpoch"/> hears
    /// each epoch's metrics; <paramref name="onBatch"/> (epoch, batches done, batches per epoch) is called on
    /// the host as batches are queued, for progress bars.
    /// </summary>
    public static TrainingResult Train(ComputeDevice device, SongTable data, TrainingOptions options,
        Action<EpochMetrics>? onEpoch = null, Action<int, int, int>? onBatch = null, Action<string>? onWarning = null,
        CancellationToken cancellationToken = default)
    {
        options.Validate();
        var clock = Stopwatch.StartNew();
        var run = Prepare(data, options, onWarning);
        device.FinishPreparation(); // the device's first use from here: kernels it was loading are ready

        using var trainSet = new DeviceDataset(device, run.TrainInputs, run.Preprocessing.NetworkInputs, run.TrainLabels);
        using var validationSet = new DeviceDataset(device, run.SelectionInputs, run.Preprocessing.NetworkInputs, run.SelectionPart.Labels!);
        using var network = NetworkFor(device, run.Layout, options, trainSet.Rows);

        var history = new List<EpochMetrics>();
        var outcome = TrainNetwork(device, network, trainSet, validationSet, options, history, onEpoch, onBatch, cancellationToken);
        // The kept weights' averaged probabilities, from the network that trained: on the validation part
        // (its rows already on the device unless tuning halves it) and then, once, on the test part.
        network.Parameters.CopyFrom(outcome.Parameters);
        var validation = run.Halved ? Predict(network, run.Preprocessing, run.ReportPart) : Predict(network, validationSet.Features);
        var test = Predict(network, run.Preprocessing, run.TestPart);
        return Finish(run, outcome, history, validation, test, clock.Elapsed.TotalSeconds, network.Path);
    }

    /// <summary>
    /// One run made ready to train, all on the host: its parts (split without leaks), the preprocessing fitted
    /// on its training part, its layout, and the network inputs of its training part and of the validation rows
    /// early stopping watches (<see cref="ValidationRows"/>).
    /// </summary>
    private sealed record PreparedRun(TrainingOptions Options, SongTable Data, SplitIndices Split, DuplicateReport Duplicates, Preprocessing Preprocessing,
        ParameterLayout Layout, float[] TrainInputs, float[] TrainLabels, SongTable SelectionPart, float[] SelectionInputs, SongTable ReportPart,
            SongTable TestPart)
    {
        /// <summary>Whether the reported validation rows are another half than those early stopping watched (tuning).</summary>
        public bool Halved => !ReferenceEquals(ReportPart, SelectionPart);
    }

    private static PreparedRun Prepare(SongTable data, TrainingOptions options, Action<string>? onWarning)
    {
        if (data.Labels is null)
            throw new InputException($"{data.Source}: training needs a target column");
        if (data.Labels.All(y => y == data.Labels[0]))
            throw new InputException($"{data.Source}: every song's target is {data.Labels[0]}: training needs hits and songs that are not hits");
        var (split, duplicates) = SplitWithoutLeaks(data, options);
        if (duplicates.Warning is { } warning)
            onWarning?.Invoke(warning);
        if (split.Train.Length == 0 || split.Validation.Length == 0 || split.Test.Length == 0)
            throw new InputException($"{data.Source}: {data.Count} rows are too few to split into training, validation and test parts");
        // Fitted on the training part, read in place by its row indices: no copy of the raw rows.
        var preprocessing = Preprocessing.Fit(data.Features, options.Encoding, options.InputTransform, split.Train);
        var layout = options.LayoutFor(options.Encoding);
        WarnOfSmallParts(split, onWarning);
        var (selectionRows, reportRows) = ValidationRows(data, split, options);
        var selectionPart = data.Subset(selectionRows);
        return new PreparedRun(options, data, split, duplicates, preprocessing, layout, preprocessing.Apply(data.Features, split.Train),
            split.Train.Select(r => data.Labels[r]).ToArray(), selectionPart, preprocessing.Apply(selectionPart.Features),
            reportRows != selectionRows ? data.Subset(reportRows) : selectionPart, data.Subset(split.Test));
    }

    /// <summary>The run's result from what training kept and the kept weights' P(hit) of the reported validation rows and of the test part.</summary>
    private static TrainingResult Finish(PreparedRun run, NetworkOutcome outcome, List<EpochMetrics> history, float[] validationProbabilities,
        float[] testProbabilities, double seconds, TrainingPath path)
    {
        var options = run.Options;
        var validation = Evaluation.Of(validationProbabilities, run.ReportPart.Labels!);
        var test = Evaluation.Of(testProbabilities, run.TestPart.Labels!);
        var last = outcome.KeptEpoch > 0 ? history.First(h => h.Epoch == outcome.KeptEpoch) : null;
        var model = new HitModel(run.Layout, run.Preprocessing, [outcome.Parameters],
            Provenance: new ModelProvenance(run.Data.Files, options.Seed, outcome.KeptEpoch,
            options.BatchSize, options.LearningRate, last?.TrainLoss ?? double.NaN, last?.TrainAccuracy ?? double.NaN, last?.ValidationLoss ?? double.NaN,
            last?.ValidationAccuracy ?? double.NaN, test.Accuracy));
        return new TrainingResult(model, history, outcome.KeptEpoch, validation, test, run.Split, seconds,
            outcome.StoppedEarly, outcome.Diverged) { Duplicates = run.Duplicates, Path = path };
    }

    /// <summary>P(hit) of every row of (rows, inputs) network inputs on the device.</summary>
    private static float[] Predict(Network network, DeviceBuffer<float> inputs)
    {
        var p = new float[inputs.Rows];
        network.PredictProbabilities(inputs, inputs.Rows, p);
        return p;
    }

    /// <summary>P(hit) of songs not yet on the device: preprocessed, uploaded once, scored.</summary>
    private static float[] Predict(Network network, Preprocessing preprocessing, SongTable songs)
    {
        using var inputs = network.Device.Upload<float>(preprocessing.Apply(songs.Features), songs.Count, preprocessing.NetworkInputs);
        return Predict(network, inputs);
    }

    /// <summary>
    /// <see cref="Train(ComputeDevice, SongTable, TrainingOptions, Action{EpochMetrics}?, Action{int, int, int}?, Action{string}?, CancellationToken)"/>
    /// as .NET libraries take progress and cancellation: each epoch's metrics reported, and the run stopped
    /// (<see cref="OperationCanceledException"/>) between epochs, or between steps on the layered path.
    /// </summary>
    public static TrainingResult Train(ComputeDevice device, SongTable data, TrainingOptions options, IProgress<EpochMetrics>? progress,
        CancellationToken cancellationToken = default) =>
        Train(device, data, options, progress is null ? null : progress.Report, cancellationToken: cancellationToken);

    /// <summary>
    /// The stratified split, with its duplicate report; with <see cref="TrainingOptions.DropDuplicates"/> the
    /// repeated songs are dropped first. Indices are rows of <paramref name="data"/> either way.
    /// </summary>
    private static (SplitIndices Split, DuplicateReport Duplicates) SplitWithoutLeaks(SongTable data, TrainingOptions options)
    {
        var repeats = Duplicates.Repeats(data);
        int repeated = repeats.Count(r => r);
        if (options.DropDuplicates && repeated > 0)
        {
            var kept = Enumerable.Range(0, data.Count).Where(r => !repeats[r]).ToArray();
            var part = Split.Stratified(kept.Select(r => data.Labels![r]).ToArray(), options.Seed, options.ValidationFraction, options.TestFraction);
            int[] Rows(int[] indices) => indices.Select(i => kept[i]).ToArray();
            return (new SplitIndices(Rows(part.Train), Rows(part.Validation), Rows(part.Test)), new DuplicateReport(repeated, 0, repeated));
        }
        var split = Split.Stratified(data.Labels!, options.Seed, options.ValidationFraction, options.TestFraction);
        return (split, new DuplicateReport(repeated, repeated > 0 ? Duplicates.AcrossParts(data, split) : 0, 0));
    }

    /// <summary>
    /// The device network, with room for the largest batch the data allows (and the chunks of scoring): a
    /// network whose buffers do not fit in memory is refused in one line that names the options to shrink.
    /// </summary>
    private static Network NetworkFor(ComputeDevice device, ParameterLayout layout, TrainingOptions options, int trainRows)
    {
        int capacity = Math.Max(Math.Min(options.BatchSize, trainRows), Network.ChunkRows);
        // Counted before anything is allocated: the device's buffers, and on the host the copies training keeps
        // (initial, kept and averaged weights; on the CPU accelerator the host's memory is the device's too).
        long needed = Network.DeviceBytes(device, layout, capacity, Math.Min(options.BatchSize, trainRows),
            device.Plan.PathFor(options.Path, layout, Math.Min(options.BatchSize, trainRows)))
            + (device.Plan.SharesHostMemory ? 4L * 4 * layout.Count : 0);
        if (needed > device.Plan.MemoryBytes)
            throw new InputException($"the network needs about {needed / (double)(1L << 30):F1} GiB ({layout.Count:N0} parameters, activations " +
                $"for {capacity} rows x {layout.Members} members); " +
                $"the {device.Kind.ToString().ToLowerInvariant()} accelerator has {device.Plan.MemoryBytes / (double)(1L << 30):F1} GiB: use a " +
                    $"smaller --hidden, --ensemble or --batch-size");
        try
        {
            return new Network(device, layout, capacity, options.Path, Math.Min(options.BatchSize, trainRows));
        }
        catch (Exception e) when (e is OutOfMemoryException or OverflowException || e.GetType().Name.Contains("OutOfMemory", StringComparison.Ordinal))
        {
            double gigabytes = 8.0 * capacity * layout.Members * layout.ActivationWidth / (1 << 30);
            throw new InputException($"the network's activations for {capacity} rows x {layout.Members} members (about {gigabytes:F1} GiB, twice over) " +
                $"do not fit in the {device.Kind.ToString().ToLowerInvariant()} accelerator's memory: use a smaller --batch-size, --ensemble or --hidden");
        }
    }

    /// <summary>Fewer songs than this in the validation or test part: its accuracy is too uncertain to mean much, and the user is told.</summary>
    public const int SmallPart = 30;

    private static void WarnOfSmallParts(SplitIndices split, Action<string>? onWarning)
    {
        int smallest = Math.Min(split.Validation.Length, split.Test.Length);
        if (smallest >= SmallPart)
            return;
        onWarning?.Invoke($"the validation and test parts hold {split.Validation.Length} and {split.Test.Length} songs: an accuracy on fewer than " +
            $"{SmallPart} songs " +
            $"moves by {100.0 / smallest:F0} points per song and means little; give more songs or larger --validation-split and --test-split");
    }

    /// <summary>The validation rows that early stopping watches, and those the reported validation figure reads (<see
    /// cref="TrainingOptions.HoldOutHalfOfValidation"/>).</summary>
    private static (int[] Selection, int[] Report) ValidationRows(SongTable data, SplitIndices split, TrainingOptions options)
    {
        if (!options.HoldOutHalfOfValidation)
            return (split.Validation, split.Validation);
        var halves = Split.Stratified(split.Validation.Select(r => data.Labels![r]).ToArray(), options.Seed + 1, validationFraction: 0.5, testFraction: 0);
        if (halves.Train.Length == 0 || halves.Validation.Length == 0)
            throw new InputException($"{data.Source}: the validation part ({split.Validation.Length} songs) is too small to halve for tuning");
        return (halves.Train.Select(i => split.Validation[i]).ToArray(), halves.Validation.Select(i => split.Validation[i]).ToArray());
    }

    /// <summary>Whether the last scoring of <paramref name="data"/> (whose labels these are) predicted one class for every row.</summary>
    private static bool PredictsOneClass(DeviceDataset data, float[] labels) => PredictsOneClass(data.SampleCorrect.ToArray(), labels);

    /// <summary>Whether scored rows of these correctness flags and labels were all predicted one class: a row is predicted a hit where it is a correctly
    /// scored hit or a wrongly scored other song.</summary>
    private static bool PredictsOneClass(ReadOnlySpan<float> correct, float[] labels)
    {
        int hits = 0;
        for (int r = 0; r < labels.Length; r++)
            hits += (correct[r] > 0.5f) == (labels[r] > 0.5f) ? 1 : 0;
        return hits == 0 || hits == labels.Length;
    }

    /// <summary>The seed of a run's device permutations (<see cref="Shuffle"/>), one per epoch from it.</summary>
    private static uint ShuffleSeed(TrainingOptions options) => (uint)options.Seed * 747796405u + 2891336453u;

    private static NetworkOutcome TrainNetwork(ComputeDevice device, Network network, DeviceDataset trainSet, DeviceDataset validationSet,
        TrainingOptions options, List<EpochMetrics> history, Action<EpochMetrics>? onEpoch, Action<int, int, int>? onBatch,
        CancellationToken cancellationToken)
    {
        network.Reset(network.Layout.Initialize(options.Seed));
        using var order = device.Allocate<int>(trainSet.Rows);
        int stepsPerEpoch = (trainSet.Rows + options.BatchSize - 1) / options.BatchSize;
        int totalSteps = stepsPerEpoch * options.Epochs;
        var settings = options.StepSettings;
        var schedule = new AdamStep[stepsPerEpoch];

        var shuffleRng = new Random(options.Seed + 1);
        var orderOnHost = Enumerable.Range(0, trainSet.Rows).ToArray();
        // The untrained network's validation loss and the validation part's share of hits: what divergence is judged against.
        var (initialLoss, _) = network.Score(validationSet);
        var validationLabels = validationSet.Labels.ToArray();
        double hitShare = validationLabels.Average(y => (double)y);
        var progress = new NetworkProgress(options, network.Parameters.ToArray(), initialLoss, hitShare, validationSet.Rows);
        // On the device, each epoch's order is a seeded permutation of the rows, made
        // there: nothing crosses per epoch. On the host (the CPU accelerator), a shuffle uploaded each epoch.
        using var rows = device.Plan.ShufflesOnDevice(options.ShuffleOnDevice) ? device.Upload<int>(orderOnHost, orderOnHost.Length) : null;
        uint shuffleSeed = ShuffleSeed(options);
        for (int epoch = 1, step = 0; epoch <= options.Epochs; epoch++, step += stepsPerEpoch)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var epochClock = Stopwatch.StartNew();
            if (rows is not null)
            {
                device.Permute(rows.View, order.View, trainSet.Rows, shuffleSeed, epoch);
            }
            else
            {
                shuffleRng.Shuffle(orderOnHost);
                order.CopyFrom(orderOnHost);
            }
            for (int k = 0; k < stepsPerEpoch; k++)
                schedule[k] = AdamStep.At(step + k + 1, options.LearningRateAt(step + k + 1, totalSteps, stepsPerEpoch), settings);
            int currentEpoch = epoch;
            network.TrainEpoch(trainSet, order, options.BatchSize, schedule, settings, firstStep: step, (done, total) =>
            {
                cancellationToken.ThrowIfCancellationRequested();
                onBatch?.Invoke(currentEpoch, done, total);
            });
            var (trainLoss, trainAccuracy) = trainSet.ReadMetrics();
            var (validationLoss, validationAccuracy) = network.Score(validationSet);
            var metrics = new EpochMetrics(epoch, trainLoss, trainAccuracy, validationLoss, validationAccuracy, epochClock.Elapsed.TotalSeconds);
            history.Add(metrics);
            onEpoch?.Invoke(metrics);
            if (!progress.GoesOn(epoch, trainLoss, validationLoss, validationAccuracy, network.Parameters.ToArray,
                () => PredictsOneClass(validationSet, validationLabels)))
                break;
        }
        return progress.Outcome();
    }

}

/// <summary>What training ended with: the weights kept, from which epoch, and why it stopped early, if it did.</summary>
internal sealed record NetworkOutcome(float[] Parameters, int KeptEpoch, string? StoppedEarly, bool Diverged);

/// <summary>
/// The network's bookkeeping across epochs: which weights to keep (the last epoch's; with early stopping the
/// best epoch's by validation loss; with weight averaging the mean of the last epochs'), and whether to go on
/// (not after a loss that is not finite, nor past the early-stopping patience).
/// </summary>
internal sealed class NetworkProgress(TrainingOptions options, float[] initial, double initialLoss, double hitShare, int validationRows)
{
    /// <summary>
    /// A loss this many times its own lowest (the training loss against the lowest training loss, the validation
    /// loss against the lowest validation loss; the untrained network's loss starts both) is divergence, as a
    /// loss that is not finite is. Overfitting moves validation loss by a few times, not by a hundred.
    /// </summary>
    public const double DivergedFactor = 100;

    private double lowestTrain = double.IsFinite(initialLoss) ? initialLoss : double.PositiveInfinity;
    private double lowestValidation = double.IsFinite(initialLoss) ? initialLoss : double.PositiveInfinity;
    private double bestAccuracy;
    private float[] kept = initial;
    private int keptEpoch;
    private double best = double.PositiveInfinity; // the lowest validation loss, or the highest accuracy negated
    private readonly double[]? averaged = options.AverageLastEpochs > 0 ? new double[initial.Length] : null;
    private string? stoppedEarly;
    private bool diverged;

    /// <summary>Takes the epoch's losses (and the current weights, read only when kept); false: stop here.</summary>
    /// <param name="predictsOneClass">whether this epoch's network predicts one class for every validation song (asked only when the accuracy is that of
    /// one class)</param>
    public bool GoesOn(int epoch, double trainLoss, double validationLoss, double validationAccuracy, Func<float[]> currentWeights,
        Func<bool>? predictsOneClass = null)
    {
        string keptNote = keptEpoch > 0 ? $"kept the weights of epoch {keptEpoch}" : "kept the initial weights";
        if (!double.IsFinite(trainLoss) || !double.IsFinite(validationLoss))
        {
            stoppedEarly = $"loss became {(double.IsFinite(trainLoss) ? validationLoss : trainLoss)} in epoch {epoch} (learning rate too high?); {keptNote}";
            diverged = true;
            return false;
        }
        bool trainGrew = trainLoss > DivergedFactor * lowestTrain;
        if (trainGrew || validationLoss > DivergedFactor * lowestValidation)
        {
            var (which, loss, lowest) = trainGrew ? ("training", trainLoss, lowestTrain) : ("validation", validationLoss, lowestValidation);
            stoppedEarly = FormattableString.Invariant($"{which} loss grew to {loss:G3} in epoch {epoch}, over {DivergedFactor:F0} times its ") +
                FormattableString.Invariant($"lowest ({lowest:G3}): training diverged (learning rate too high?); {keptNote}");
            diverged = true;
            return false;
        }
        // Every validation song predicted one class, after the network had done better than that: a collapse.
        double oneClass = 0.5 / validationRows;
        bool oneClassAccuracy = Math.Abs(validationAccuracy - hitShare) < oneClass || Math.Abs(validationAccuracy - (1 - hitShare)) < oneClass;
        if (oneClassAccuracy && bestAccuracy > Math.Max(hitShare, 1 - hitShare) + 0.02 && (predictsOneClass?.Invoke() ?? true))
        {
            stoppedEarly = FormattableString.Invariant($"in epoch {epoch} every validation song is predicted one class (accuracy ") +
                FormattableString.Invariant($"{validationAccuracy:P2}, down from {bestAccuracy:P2}): training collapsed (learning rate too high?); {keptNote}");
            diverged = true;
            return false;
        }
        lowestTrain = Math.Min(lowestTrain, trainLoss);
        lowestValidation = Math.Min(lowestValidation, validationLoss);
        bestAccuracy = Math.Max(bestAccuracy, validationAccuracy);
        double watched = options.SelectOn == SelectionMetric.Loss ? validationLoss : -validationAccuracy;
        bool improved = watched < best;
        if (improved)
            best = watched;
        if (options.EarlyStoppingPatience == 0 || improved)
        {
            kept = currentWeights();
            keptEpoch = epoch;
            if (averaged is not null && epoch > options.Epochs - options.AverageLastEpochs)
                for (int i = 0; i < kept.Length; i++)
                    averaged[i] += kept[i];
            return true;
        }
        if (epoch - keptEpoch < options.EarlyStoppingPatience)
            return true;
        stoppedEarly = $"validation {options.SelectOn.ToString().ToLowerInvariant()} has not improved for {options.EarlyStoppingPatience} epochs; " +
            $"kept the weights of epoch {keptEpoch}";
        return false;
    }

    public NetworkOutcome Outcome()
    {
        // Weight averaging (never with early stopping): the mean of the last epochs' weights, unless training diverged first.
        var weights = averaged is not null && !diverged ? averaged.Select(sum => (float)(sum / options.AverageLastEpochs)).ToArray() : kept;
        return new NetworkOutcome(weights, keptEpoch, stoppedEarly, diverged);
    }
}
