// Many trainings at once: runs of one network shape and batch size, each its own rows, split, seed and
// options, trained epoch by epoch in lockstep, one launch of the GPU epoch a step for all of them (a group a
// run), scored in one launch, with each run's own bookkeeping (NetworkProgress) as Trainer.Train keeps it.
// Every run gets what training it alone on the GPU epoch gives: the same order (the same permutation or host
// shuffle, computed on the host for all), the same schedule, the same kernel arithmetic in its own group,
// the same metric sums (ReadRunMetrics: on a GPU one launch and one read for all runs, each run's bits those
// of its own ReadMetrics): tests/HitGpu.Nn.Tests/TrainingTests holds that to the bit.
using System.Diagnostics;
using HitGpu.Kernels;

namespace HitGpu.Nn;

public static partial class Trainer
{
    /// <summary>Whether two layouts run as one launch's runs: the kernels read the same shapes.</summary>
    private static bool SameShape(ParameterLayout a, ParameterLayout b) =>
        a.Count == b.Count && a.Members == b.Members && a.ActivationWidth == b.ActivationWidth && a.Shapes.SequenceEqual(b.Shapes);

    /// <summary>
    /// Each run's rows in place, (runs, positions): run r's rows bases[r] on, counts[r] of them, the rest of its
    /// positions its last row again (read by no kernel: a run's entry says how many it has).
    /// </summary>
    private static int[] InPlaceOrders(int[] bases, int[] counts, int positions) =>
        Enumerable.Range(0, bases.Length).SelectMany(r => Enumerable.Range(bases[r], positions).Select(i => Math.Min(i, bases[r] + counts[r] - 1))).ToArray();

    /// <summary>Where each of runs' blocks of these row counts starts, laid end to end from <paramref name="rows"/> on (which moves past them).</summary>
    private static int[] Bases(IEnumerable<int> counts, ref int rows)
    {
        var bases = new List<int>();
        foreach (int count in counts)
        {
            bases.Add(rows);
            rows += count;
        }
        return [.. bases];
    }

    /// <summary>Trains <paramref name="runs"/> (one layout, one batch size, on the GPU epoch) together; their results in order.</summary>
    private static TrainingResult[] TrainGroup(ComputeDevice device, IReadOnlyList<PreparedRun> runs, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var layout = runs[0].Layout;
        int count = layout.Count, inputs = layout.Inputs(0), batchSize = runs[0].Options.BatchSize, n = runs.Count;
        // Every run's training rows, then every run's watched validation rows, in one feature matrix: a run's
        // order and validation rows index it.
        int rowsSoFar = 0;
        var trainBase = Bases(runs.Select(r => r.TrainLabels.Length), ref rowsSoFar);
        var validationBase = Bases(runs.Select(r => r.SelectionPart.Count), ref rowsSoFar);
        int positions = runs.Max(r => r.TrainLabels.Length), validationPositions = runs.Max(r => r.SelectionPart.Count);
        int steps = (positions + batchSize - 1) / batchSize;
        if ((long)n * Math.Max(count, Math.Max(positions, validationPositions)) > int.MaxValue || (long)rowsSoFar * inputs > int.MaxValue)
            throw new InputException($"{n} runs trained together pass 2^31 values in one buffer: train fewer runs at once");
        // Counted before anything is allocated: the rows, each run's parameters, moments and per-sample slots.
        long bytes = 4L * ((long)rowsSoFar * (inputs + 1) + 3L * n * count + 3L * n * (positions + validationPositions) + (long)n * steps * 7);
        if (bytes > device.Plan.MemoryBytes)
            throw new InputException($"{n} runs trained together need about {bytes / (double)(1L << 30):F1} GiB; the " +
                $"{device.Kind.ToString().ToLowerInvariant()} accelerator has " +
                $"{device.Plan.MemoryBytes / (double)(1L << 30):F1} GiB: train fewer runs at once");

        var features = new float[(long)rowsSoFar * inputs];
        var labels = new float[rowsSoFar];
        for (int r = 0; r < n; r++)
        {
            runs[r].TrainInputs.CopyTo(features, (long)trainBase[r] * inputs);
            runs[r].TrainLabels.CopyTo(labels, trainBase[r]);
            runs[r].SelectionInputs.CopyTo(features, (long)validationBase[r] * inputs);
            runs[r].SelectionPart.Labels!.CopyTo(labels, validationBase[r]);
        }
        device.FinishPreparation();
        using var x = device.Upload<float>(features, rowsSoFar, inputs);
        using var y = device.Upload<float>(labels, rowsSoFar);
        using var shapes = device.Upload<LayerShape>(layout.Shapes, layout.Layers);
        using var parameters = device.Allocate<float>(n, count);
        using var m = device.Allocate<float>(n, count);
        using var v = device.Allocate<float>(n, count);
        using var order = device.Allocate<int>(n, positions);
        using var sampleLoss = device.Allocate<float>(n, positions);
        using var sampleCorrect = device.Allocate<float>(n, positions);
        using var validationOrder = device.Upload<int>(InPlaceOrders(validationBase, runs.Select(r => r.SelectionPart.Count).ToArray(),
            validationPositions), n * validationPositions);
        using var validationLoss = device.Allocate<float>(n, validationPositions);
        using var validationCorrect = device.Allocate<float>(n, validationPositions);
        using var jobs = device.Allocate<EpochRun>(n);
        using var schedule = device.Allocate<AdamStep>(n, steps);
        using var sums = device.Allocate<float>(2 * n);
        var initial = runs.Select(r => r.Layout.Initialize(r.Options.Seed)).ToArray();
        parameters.CopyFrom(initial.SelectMany(p => p).ToArray());
        m.Clear();
        v.Clear();

        var validationJobs = runs.Select(r => new EpochRun { Rows = r.SelectionPart.Count }).ToArray();
        (double Loss, double Accuracy)[] Score(bool[] which)
        {
            jobs.CopyFrom(validationJobs.Select((job, r) => which[r] ? job : default).ToArray());
            device.ScoreGpuEpoch(new GpuEpochScoreViews
            {
                Features = x.View, Labels = y.View, Layers = shapes.View, Parameters = parameters.View, Order = validationOrder.View,
                LossOrProbability = validationLoss.View, SampleCorrect = validationCorrect.View, Runs = jobs.View, RunCount = n,
                Positions = validationPositions, MaxRows = validationPositions,
            }, layout);
            return DeviceDataset.ReadRunMetrics(device, validationLoss, validationCorrect, jobs,
                runs.Select((run, r) => which[r] ? run.SelectionPart.Count : 0).ToArray(),
                validationPositions, sums);
        }
        bool RunPredictsOneClass(int r)
        {
            var correct = new float[runs[r].SelectionPart.Count];
            validationCorrect.CopyTo(r * validationPositions, correct);
            return PredictsOneClass(correct, runs[r].SelectionPart.Labels!);
        }
        float[] Weights(int r)
        {
            var weights = new float[count];
            parameters.CopyTo(r * count, weights);
            return weights;
        }

        // The untrained networks' validation losses: what divergence is judged against (as Train does).
        var active = Enumerable.Repeat(true, n).ToArray();
        var initialScores = Score(active);
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
                int rows = runs[r].TrainLabels.Length;
                var slice = orders.AsSpan(r * positions, rows);
                plans[r].HostOrder(epoch, slice);
                for (int i = 0; i < rows; i++)
                    slice[i] += trainBase[r];
                plans[r].Schedule(epoch, schedules.AsSpan(r * steps, plans[r].StepsPerEpoch));
                epochJobs[r] = new EpochRun { Rows = rows, FirstStep = plans[r].FirstStep(epoch), Settings = options.StepSettings };
            }
            if (!active.Any(a => a))
                break;
            order.CopyFrom(orders);
            schedule.CopyFrom(schedules);
            jobs.CopyFrom(epochJobs);
            device.TrainGpuEpoch(new GpuEpochTrainViews
            {
                Features = x.View, Labels = y.View, Layers = shapes.View, Parameters = parameters.View, AdamM = m.View, AdamV = v.View, Order = order.View,
                SampleLoss = sampleLoss.View, SampleCorrect = sampleCorrect.View, Runs = jobs.View, Schedule = schedule.View,
                RunCount = n, Positions = positions, Steps = steps, BatchSize = batchSize,
            }, layout);
            var train = DeviceDataset.ReadRunMetrics(device, sampleLoss, sampleCorrect, jobs, epochJobs.Select(job => job.Rows).ToArray(), positions, sums);
            var validation = Score(active);
            double seconds = epochClock.Elapsed.TotalSeconds;
            for (int r = 0; r < n; r++)
            {
                if (!active[r])
                    continue;
                histories[r].Add(new EpochMetrics(epoch, train[r].Loss, train[r].Accuracy, validation[r].Loss, validation[r].Accuracy, seconds));
                int run = r;
                active[r] = progress[r].GoesOn(epoch, train[r].Loss, validation[r].Loss, validation[r].Accuracy, () => Weights(run),
                    () => RunPredictsOneClass(run));
            }
        }

        // The kept weights' P(hit) of each run's reported validation rows and test part, in one launch.
        var outcomes = progress.Select(p => p.Outcome()).ToArray();
        var parts = runs.Select(r => (Validation: r.Halved ? r.ReportPart : r.SelectionPart, Test: r.TestPart)).ToArray();
        // The watched validation rows' inputs are made already (Train scores them where they are, too).
        var partInputs = runs.Select((r, i) => (r.Halved ? r.Preprocessing.Apply(r.ReportPart.Features) : r.SelectionInputs)
            .Concat(r.Preprocessing.Apply(parts[i].Test.Features)).ToArray()).ToArray();
        var partRows = parts.Select(p => p.Validation.Count + p.Test.Count).ToArray();
        int partPositions = partRows.Max(), allPartRows = 0;
        var partBase = Bases(partRows, ref allPartRows);
        using var partFeatures = device.Upload<float>(partInputs.SelectMany(f => f).ToArray(), allPartRows, inputs);
        using var partOrder = device.Upload<int>(InPlaceOrders(partBase, partRows, partPositions), n * partPositions);
        using var probabilities = device.Allocate<float>(n, partPositions);
        parameters.CopyFrom(outcomes.SelectMany(o => o.Parameters).ToArray());
        jobs.CopyFrom(partRows.Select(rows => new EpochRun { Rows = rows }).ToArray());
        device.ScoreGpuEpoch(new GpuEpochScoreViews
        {
            Features = partFeatures.View, Layers = shapes.View, Parameters = parameters.View, Order = partOrder.View, LossOrProbability = probabilities.View,
            Runs = jobs.View, RunCount = n, Positions = partPositions, MaxRows = partPositions,
        }, layout);
        var p = probabilities.ToArray();
        double total = clock.Elapsed.TotalSeconds;
        return runs.Select((run, r) => Finish(run, outcomes[r], histories[r], p.AsSpan(r * partPositions, parts[r].Validation.Count).ToArray(),
            p.AsSpan(r * partPositions + parts[r].Validation.Count, parts[r].Test.Count).ToArray(), total, TrainingPath.GpuEpoch)).ToArray();
    }
}
