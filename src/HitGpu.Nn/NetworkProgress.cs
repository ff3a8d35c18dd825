// Across epochs: which weights to keep and whether to go on (early stopping, weight averaging, divergence).
namespace HitGpu.Nn;

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
