// What a training run gives back: its epochs' metrics and its result.
using HitGpu.Kernels;

namespace HitGpu.Nn;

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
