// Training: split, standardise, then epochs of shuffled mini-batches with Adam. The data stays on the device
// for the whole run; per epoch the host uploads one shuffled order and reads back one loss and one
// correctness flag per sample, for the epoch's metrics. Nothing crosses per batch.
using System.Diagnostics;
using HitGpu.Kernels;

namespace HitGpu.Nn;

public sealed record TrainingOptions
{
    public int Epochs { get; init; } = 20;
    public int BatchSize { get; init; } = 32;
    public IReadOnlyList<int> Hidden { get; init; } = [64, 32];
    public float LearningRate { get; init; } = 1e-3f;
    public int Seed { get; init; } = 0;
    public double ValidationFraction { get; init; } = 0.15;
    public double TestFraction { get; init; } = 0.15;
    /// <summary>Stop after this many epochs without a lower validation loss, and keep the best epoch's weights; 0 = off.</summary>
    public int EarlyStoppingPatience { get; init; } = 0;
    /// <summary>Layered or fused epoch; null: what the accelerator prefers (<see cref="ComputeDevice.PreferredTrainingPath"/>).</summary>
    public TrainingPath? Path { get; init; }

    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentException($"epochs must be at least 1, got {Epochs}");
        if (BatchSize < 1) throw new ArgumentException($"batch size must be at least 1, got {BatchSize}");
        if (Hidden.Any(h => h < 1)) throw new ArgumentException($"hidden widths must be positive, got {string.Join(",", Hidden)}");
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) throw new ArgumentException($"learning rate must be a positive number, got {LearningRate}");
        if (EarlyStoppingPatience < 0) throw new ArgumentException($"early-stopping patience must be 0 (off) or more, got {EarlyStoppingPatience}");
        if (ValidationFraction <= 0 || TestFraction <= 0 || ValidationFraction + TestFraction >= 1)
            throw new ArgumentException($"validation ({ValidationFraction}) and test ({TestFraction}) splits must be above 0 and add up to less than 1");
    }
}

public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, double ValidationLoss, double ValidationAccuracy, double Seconds);

/// <summary>
/// The trained model (weights of <see cref="KeptEpoch"/>), the per-epoch history, the test part's loss and
/// accuracy (read once, at the end), and why training stopped before its last epoch, if it did.
/// </summary>
public sealed record TrainingResult(
    HitModel Model, IReadOnlyList<EpochMetrics> History, int KeptEpoch, double TestLoss, double TestAccuracy,
    SplitIndices Split, double Seconds, string? StoppedEarly, bool Diverged)
{
    /// <summary>The epochs alone (training and per-epoch validation), without loading, splitting and the final test.</summary>
    public double LoopSeconds => History.Sum(h => h.Seconds);

    public int TrainRows => Split.Train.Length;
    public int ValidationRows => Split.Validation.Length;
    public int TestRows => Split.Test.Length;
}

public static class Trainer
{
    /// <summary>Evaluation passes take up to this many rows at a time.</summary>
    public const int EvaluationRows = 1024;

    /// <summary>
    /// Trains one network. <paramref name="onEpoch"/> hears each epoch's metrics; <paramref name="onBatch"/>
    /// (epoch, batches done, batches per epoch) is called on the host as batches are queued, for progress bars.
    /// </summary>
    public static TrainingResult Train(ComputeDevice device, SongTable data, TrainingOptions options,
        Action<EpochMetrics>? onEpoch = null, Action<int, int, int>? onBatch = null)
    {
        options.Validate();
        if (data.Labels is null)
            throw new InputException($"{data.Source}: training needs a target column");
        var clock = Stopwatch.StartNew();
        var split = Split.Stratified(data.Labels, options.Seed, options.ValidationFraction, options.TestFraction);
        if (split.Train.Length == 0 || split.Validation.Length == 0 || split.Test.Length == 0)
            throw new InputException($"{data.Source}: {data.Count} rows are too few to split into training, validation and test parts");
        var train = data.Subset(split.Train);
        var standardizer = Standardizer.Fit(train.Features, SongData.FeatureCount);
        var layout = ParameterLayout.ForClassifier(SongData.FeatureCount, options.Hidden);

        using var trainSet = DeviceSet.Upload(device, train, standardizer);
        using var validationSet = DeviceSet.Upload(device, data.Subset(split.Validation), standardizer);
        using var testSet = DeviceSet.Upload(device, data.Subset(split.Test), standardizer);
        using var network = new Network(device, layout, Math.Max(options.BatchSize, EvaluationRows), layout.Initialize(options.Seed));
        using var order = device.Allocate<int>(trainSet.Rows);
        var path = options.Path ?? device.PreferredTrainingPath;
        network.Path = path;
        int stepsPerEpoch = (trainSet.Rows + options.BatchSize - 1) / options.BatchSize;
        using var schedule = device.Allocate<float>(stepsPerEpoch, 3);
        var scheduleOnHost = new float[stepsPerEpoch * 3];

        var shuffleRng = new Random(options.Seed + 1);
        var orderOnHost = Enumerable.Range(0, trainSet.Rows).ToArray();
        var history = new List<EpochMetrics>();
        int step = 0;
        // The weights to keep: the last epoch's, or with early stopping the best epoch's by validation loss.
        var kept = network.Parameters.ToArray();
        int keptEpoch = 0;
        double bestValidationLoss = double.PositiveInfinity;
        string? stoppedEarly = null;
        bool diverged = false;
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            var epochClock = Stopwatch.StartNew();
            shuffleRng.Shuffle(orderOnHost);
            order.CopyFrom(orderOnHost);
            if (path == TrainingPath.FusedEpoch)
            {
                for (int k = 0; k < stepsPerEpoch; k++)
                {
                    var s = AdamStep.At(step + k + 1, options.LearningRate);
                    (scheduleOnHost[k * 3], scheduleOnHost[k * 3 + 1], scheduleOnHost[k * 3 + 2]) = (s.LearningRate, s.BiasCorrection1, s.BiasCorrection2);
                }
                schedule.CopyFrom(scheduleOnHost);
                network.TrainEpochFused(trainSet.Features, trainSet.Labels, order, options.BatchSize, schedule, trainSet.SampleLoss, trainSet.SampleCorrect);
                step += stepsPerEpoch;
                onBatch?.Invoke(epoch, stepsPerEpoch, stepsPerEpoch);
            }
            else for (int offset = 0; offset < trainSet.Rows; offset += options.BatchSize)
            {
                int rows = Math.Min(options.BatchSize, trainSet.Rows - offset);
                var input = network.Input(trainSet.Features, offset, order);
                network.Forward(input, rows);
                device.BinaryCrossEntropy(new LossArgs
                {
                    Logits = network.Logits.View,
                    Labels = RowSource.Gather(trainSet.Labels.View, 1, order.View, offset),
                    LogitGradient = network.LogitGradient.View,
                    SampleLoss = trainSet.SampleLoss.View, SampleCorrect = trainSet.SampleCorrect.View,
                    Rows = rows, GradientScale = 1f / rows,
                });
                network.Backward(input, rows);
                network.Update(AdamStep.At(++step, options.LearningRate));
                onBatch?.Invoke(epoch, offset / options.BatchSize + 1, stepsPerEpoch);
            }
            var (trainLoss, trainAccuracy) = trainSet.ReadMetrics();
            var (validationLoss, validationAccuracy) = validationSet.Score(network);
            var metrics = new EpochMetrics(epoch, trainLoss, trainAccuracy, validationLoss, validationAccuracy, epochClock.Elapsed.TotalSeconds);
            history.Add(metrics);
            onEpoch?.Invoke(metrics);

            if (!double.IsFinite(trainLoss) || !double.IsFinite(validationLoss))
            {
                stoppedEarly = $"loss became {(double.IsFinite(trainLoss) ? validationLoss : trainLoss)} in epoch {epoch} (learning rate too high?); " +
                    (keptEpoch > 0 ? $"kept the weights of epoch {keptEpoch}" : "kept the initial weights");
                diverged = true;
                break;
            }
            bool improved = validationLoss < bestValidationLoss;
            if (improved)
                bestValidationLoss = validationLoss;
            if (options.EarlyStoppingPatience == 0 || improved)
            {
                kept = network.Parameters.ToArray();
                keptEpoch = epoch;
            }
            else if (epoch - keptEpoch >= options.EarlyStoppingPatience)
            {
                stoppedEarly = $"validation loss has not improved for {options.EarlyStoppingPatience} epochs; kept the weights of epoch {keptEpoch}";
                break;
            }
        }
        network.Parameters.CopyFrom(kept);
        var (testLoss, testAccuracy) = testSet.Score(network);
        var last = keptEpoch > 0 ? history[keptEpoch - 1] : null;
        var provenance = new ModelProvenance(data.Files, options.Seed, keptEpoch, options.BatchSize, options.LearningRate,
            last?.TrainLoss ?? double.NaN, last?.TrainAccuracy ?? double.NaN, last?.ValidationLoss ?? double.NaN, last?.ValidationAccuracy ?? double.NaN, testAccuracy);
        var model = new HitModel(layout, standardizer, [kept], provenance);
        return new TrainingResult(model, history, keptEpoch, testLoss, testAccuracy, split, clock.Elapsed.TotalSeconds, stoppedEarly, diverged);
    }
}

/// <summary>One part of the data on the device: standardised features, labels and per-sample metric slots.</summary>
internal sealed class DeviceSet : IDisposable
{
    public required DeviceBuffer<float> Features { get; init; }      // (rows, 15), standardised
    public required DeviceBuffer<float> Labels { get; init; }        // (rows)
    public required DeviceBuffer<float> SampleLoss { get; init; }    // (rows)
    public required DeviceBuffer<float> SampleCorrect { get; init; } // (rows)
    public int Rows => Labels.Rows;

    public static DeviceSet Upload(ComputeDevice device, SongTable table, Standardizer standardizer) => new()
    {
        Features = device.Upload<float>(standardizer.Apply(table.Features), table.Count, SongData.FeatureCount),
        Labels = device.Upload<float>(table.Labels!, table.Count),
        SampleLoss = device.Allocate<float>(table.Count),
        SampleCorrect = device.Allocate<float>(table.Count),
    };

    public (double Loss, double Accuracy) Score(Network network)
    {
        network.Score(Features, Labels, SampleLoss, SampleCorrect);
        return ReadMetrics();
    }

    /// <summary>Mean loss and accuracy from the per-sample slots, summed on the host in a fixed order.</summary>
    public (double Loss, double Accuracy) ReadMetrics()
    {
        var loss = SampleLoss.ToArray();
        var correct = SampleCorrect.ToArray();
        double lossSum = 0, correctSum = 0;
        for (int i = 0; i < loss.Length; i++)
        {
            lossSum += loss[i];
            correctSum += correct[i];
        }
        return (lossSum / loss.Length, correctSum / loss.Length);
    }

    public void Dispose()
    {
        Features.Dispose();
        Labels.Dispose();
        SampleLoss.Dispose();
        SampleCorrect.Dispose();
    }
}
