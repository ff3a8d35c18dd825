// Many trainings at once: runs of one network shape and batch size, each its own rows, split, seed and
// options, trained epoch by epoch in lockstep, one launch of the GPU epoch a step for all of them (a group a
// run), scored in one launch, with each run's own bookkeeping (NetworkProgress) as Trainer.Train keeps it.
// Every run gets what training it alone on the GPU epoch gives: the same order (the same permutation or host
// shuffle, computed on the host for all), the same schedule, the same kernel arithmetic in its own group,
// the same metric sums (ReadRunMetrics: on a GPU one launch and one read for all runs, each run's bits those
// of its own ReadMetrics): tests/HitGpu.Nn.Tests/TrainingTests holds that to the bit. The device's state is
// NetworkRuns' and RunRows' (src/HitGpu.Kernels/Engine/NetworkRuns.cs); this file keeps the runs' books.
using System.Diagnostics;
using HitGpu.Kernels;

namespace HitGpu.Nn;

public static partial class Trainer
{
    /// <summary>Whether two layouts run as one launch's runs: the kernels read the same shapes.</summary>
    private static bool SameShape(ParameterLayout a, ParameterLayout b) =>
        a.Count == b.Count && a.Members == b.Members && a.ActivationWidth == b.ActivationWidth && a.Shapes.SequenceEqual(b.Shapes);

    /// <summary>Trains <paramref name="runs"/> (one layout, one batch size, on the GPU epoch) together; their results in order.</summary>
    private static TrainingResult[] TrainGroup(ComputeDevice device, IReadOnlyList<PreparedRun> runs, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var layout = runs[0].Layout;
        int count = layout.Count, inputs = layout.Inputs(0), batchSize = runs[0].Options.BatchSize, n = runs.Count;
        long trainRows = runs.Sum(r => (long)r.TrainLabels.Length), watchedRows = runs.Sum(r => (long)r.SelectionPart.Count);
        int positions = runs.Max(r => r.TrainLabels.Length), watchedPositions = runs.Max(r => r.SelectionPart.Count);
        int steps = (positions + batchSize - 1) / batchSize;
        if ((long)n * Math.Max(count, Math.Max(positions, watchedPositions)) > int.MaxValue || Math.Max(trainRows, watchedRows) * inputs > int.MaxValue)
            throw new InputException($"{n} runs trained together pass 2^31 values in one buffer: train fewer runs at once");
        // Counted before anything is allocated: the runs' networks, their training rows and their watched validation rows.
        long bytes = NetworkRuns.DeviceBytes(layout, n, steps) + RunRows.DeviceBytes(trainRows, inputs, n, positions)
            + RunRows.DeviceBytes(watchedRows, inputs, n, watchedPositions);
        if (device.Plan.MemoryShortfall(bytes) is { } shortfall)
            throw new InputException($"{n} runs trained together need {shortfall}: train fewer runs at once");

        device.FinishPreparation();
        using var networks = new NetworkRuns(device, layout, n, steps);
        using var train = new RunRows(device, runs.Select(r => r.TrainInputs).ToArray(), inputs, runs.Select(r => r.TrainLabels).ToArray());
        using var watched = new RunRows(device, runs.Select(r => r.SelectionInputs).ToArray(), inputs,
            runs.Select(r => r.SelectionPart.Labels!).ToArray());
        var initial = runs.Select(r => r.Layout.Initialize(r.Options.Seed)).ToArray();
        networks.Reset(initial.SelectMany(p => p).ToArray());

        bool RunPredictsOneClass(int r)
        {
            var correct = new float[watched.Counts[r]];
            watched.SampleCorrect.CopyTo(r * watched.Positions, correct);
            return PredictsOneClass(correct, runs[r].SelectionPart.Labels!);
        }

        // The untrained networks' validation losses: what divergence is judged against (as Train does).
        var active = Enumerable.Repeat(true, n).ToArray();
        var initialScores = networks.Score(watched, active);
        var progress = runs.Select((run, r) => new NetworkProgress(run.Options, initial[r], initialScores[r].Loss,
            run.SelectionPart.Labels!.Average(label => (double)label), run.SelectionPart.Count)).ToArray();
        var histories = runs.Select(_ => new List<EpochMetrics>()).ToArray();
        // Each run's epochs as Train plans them (EpochPlan): its orders made on the host, all uploaded in one copy.
        var plans = runs.Select(r => EpochPlan.For(device, r.Options, r.TrainLabels.Length)).ToArray();
        var orders = new int[n * positions];
        var schedules = new AdamStep[n * steps];
        var epochJobs = new EpochRun[n];
        int epochs = runs.Max(r => r.Options.Epochs);
        for (int epoch = 1; epoch <= epochs && active.Any(a => a); epoch++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var epochClock = Stopwatch.StartNew();
            for (int r = 0; r < n; r++)
            {
                var options = runs[r].Options;
                active[r] &= epoch <= options.Epochs;
                epochJobs[r] = default;
                if (!active[r])
                    continue;
                int rows = train.Counts[r];
                var slice = orders.AsSpan(r * positions, rows);
                plans[r].HostOrder(epoch, slice);
                for (int i = 0; i < rows; i++)
                    slice[i] += train.Bases[r];
                plans[r].Schedule(epoch, schedules.AsSpan(r * steps, plans[r].StepsPerEpoch));
                epochJobs[r] = new EpochRun { Rows = rows, FirstStep = plans[r].FirstStep(epoch), Settings = options.StepSettings };
            }
            if (!active.Any(a => a))
                break;
            var trained = networks.TrainEpoch(train, orders, schedules, epochJobs, batchSize);
            var validation = networks.Score(watched, active);
            double seconds = epochClock.Elapsed.TotalSeconds;
            for (int r = 0; r < n; r++)
            {
                if (!active[r])
                    continue;
                histories[r].Add(new EpochMetrics(epoch, trained[r].Loss, trained[r].Accuracy, validation[r].Loss, validation[r].Accuracy, seconds));
                int run = r;
                active[r] = progress[r].GoesOn(epoch, trained[r].Loss, validation[r].Loss, validation[r].Accuracy, () => networks.ParametersOf(run),
                    () => RunPredictsOneClass(run));
            }
        }

        // The kept weights' P(hit) of each run's reported validation rows and test part, in one launch.
        var outcomes = progress.Select(p => p.Outcome()).ToArray();
        var parts = runs.Select(r => (Validation: r.Halved ? r.ReportPart : r.SelectionPart, Test: r.TestPart)).ToArray();
        // The watched validation rows' inputs are made already (Train scores them where they are, too).
        var partInputs = runs.Select((r, i) => (r.Halved ? r.Preprocessing.Apply(r.ReportPart.Features) : r.SelectionInputs)
            .Concat(r.Preprocessing.Apply(parts[i].Test.Features)).ToArray()).ToArray();
        using var scored = new RunRows(device, partInputs, inputs);
        networks.Reset(outcomes.SelectMany(o => o.Parameters).ToArray());
        var p = networks.Predict(scored);
        double total = clock.Elapsed.TotalSeconds;
        return runs.Select((run, r) => Finish(run, outcomes[r], histories[r], p.AsSpan(r * scored.Positions, parts[r].Validation.Count).ToArray(),
            p.AsSpan(r * scored.Positions + parts[r].Validation.Count, parts[r].Test.Count).ToArray(), total, TrainingPath.GpuEpoch)).ToArray();
    }
}
