// Training: split, fit the preprocessing on the training part, then epochs of shuffled mini-batches with Adam.
// The data stays on the device for the whole run. Per epoch, on the CPU accelerator the host uploads one
// shuffled order and reads back one loss and one correctness flag per sample; on a GPU the order is permuted
// and the metrics summed there. Nothing crosses per batch.
using System.Diagnostics;
using HitGpu.Kernels;

namespace HitGpu.Nn;

public static partial class Trainer
{
    /// <summary>
    /// Trains independent runs and returns one result per run, in their order. Runs the device plan trains on
    /// the GPU epoch (a GPU's path for networks that fit, <see cref="DevicePlan.PathFor"/>) that share a network
    /// shape and batch size train together: one launch an epoch for all, a group a run, each run's result the
    /// one training it alone on that path gives. The others (the CPU accelerator's, networks too large for a
    /// group) train one after another through
    /// <see cref="Train(ComputeDevice, SongTable, TrainingOptions, Action{EpochMetrics}?, Action{int, int, int}?, Action{string}?, CancellationToken)"/>,
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
    /// smaller part than a batch would let fit, or whose network or path is refused, trains alone: Train decides
    /// it, or says why not).
    /// </summary>
    private static bool TrainsOnTheGpuEpoch(ComputeDevice device, TrainingOptions options)
    {
        try
        {
            return device.Plan.TrainsOnGpuEpoch(options.Path, options.LayoutFor(options.Encoding), options.BatchSize);
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
        int batchRows = Math.Min(options.BatchSize, trainRows), capacity = Math.Max(batchRows, Network.ChunkRows);
        if (device.Plan.RequestedPathDoesNotFit(options.Path, layout, batchRows) is { } why)
            throw new InputException($"the GPU epoch cannot train this network: {why}: {TrainingOptions.SmallerNetwork}");
        // Counted before anything is allocated: the device's buffers, and on the host the copies training keeps
        // (initial, kept and averaged weights; on the CPU accelerator the host's memory is the device's too).
        long needed = Network.DeviceBytes(device, layout, capacity, batchRows, device.Plan.PathFor(options.Path, layout, batchRows))
            + (device.Plan.SharesHostMemory ? 4L * 4 * layout.Count : 0);
        if (device.Plan.MemoryShortfall(needed) is { } shortfall)
            throw new InputException($"the network needs {shortfall} ({layout.Count:N0} parameters, activations for {capacity} rows x " +
                $"{layout.Members} members): {TrainingOptions.SmallerNetwork}");
        try
        {
            return new Network(device, layout, capacity, options.Path, batchRows);
        }
        catch (Exception e) when (e is OutOfMemoryException or OverflowException || e.GetType().Name.Contains("OutOfMemory", StringComparison.Ordinal))
        {
            throw new InputException($"the network's buffers (about {needed / (double)(1L << 30):F1} GiB, activations for {capacity} rows x " +
                $"{layout.Members} members) do not fit in the {device.Kind.ToString().ToLowerInvariant()} accelerator's memory: " +
                TrainingOptions.SmallerNetwork);
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
            $"moves by {100.0 / smallest:F0} points per song and means little; give more songs or larger " +
            $"{nameof(TrainingOptions)}.{nameof(TrainingOptions.ValidationFraction)} and {nameof(TrainingOptions)}.{nameof(TrainingOptions.TestFraction)}");
    }

    /// <summary>The validation rows that early stopping watches, and those the reported validation figure reads
    /// (<see cref="TrainingOptions.HoldOutHalfOfValidation"/>).</summary>
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

    private static NetworkOutcome TrainNetwork(ComputeDevice device, Network network, DeviceDataset trainSet, DeviceDataset validationSet,
        TrainingOptions options, List<EpochMetrics> history, Action<EpochMetrics>? onEpoch, Action<int, int, int>? onBatch,
        CancellationToken cancellationToken)
    {
        network.Reset(network.Layout.Initialize(options.Seed));
        using var order = device.Allocate<int>(trainSet.Rows);
        var plan = EpochPlan.For(device, options, trainSet.Rows);
        var settings = options.StepSettings;
        var schedule = new AdamStep[plan.StepsPerEpoch];
        // The untrained network's validation loss and the validation part's share of hits: what divergence is judged against.
        var (initialLoss, _) = network.Score(validationSet);
        var validationLabels = validationSet.Labels.ToArray();
        double hitShare = validationLabels.Average(y => (double)y);
        var progress = new NetworkProgress(options, network.Parameters.ToArray(), initialLoss, hitShare, validationSet.Rows);
        // Permutations are made on the device from the rows in order: nothing crosses per epoch. A host shuffle is
        // uploaded each epoch.
        var orderOnHost = Enumerable.Range(0, trainSet.Rows).ToArray();
        using var rows = plan.Permutes ? device.Upload<int>(orderOnHost, orderOnHost.Length) : null;
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var epochClock = Stopwatch.StartNew();
            if (rows is not null)
            {
                device.Permute(rows.View, order.View, trainSet.Rows, plan.PermutationSeed, epoch);
            }
            else
            {
                plan.HostOrder(epoch, orderOnHost);
                order.CopyFrom(orderOnHost);
            }
            plan.Schedule(epoch, schedule);
            int currentEpoch = epoch;
            network.TrainEpoch(trainSet, order, options.BatchSize, schedule, settings, firstStep: plan.FirstStep(epoch), (done, total) =>
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
