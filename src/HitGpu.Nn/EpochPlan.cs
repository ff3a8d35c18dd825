// A run's epochs as every training loop takes them (Trainer.Train, Trainer.TrainMany, the golden tests): the
// order of its rows each epoch and the Adam step of each batch. One statement of the shuffle rule.
using HitGpu.Kernels;

namespace HitGpu.Nn;

/// <summary>
/// One run's epochs: its training rows in batches of the options' size. Each epoch's order is
/// either a seeded permutation of the rows (<see cref="Shuffle"/>, on the device where the plan shuffles there,
/// its reference on the host otherwise) or a host shuffle carried from epoch to epoch, as
/// <see cref="DevicePlan.ShufflesOnDevice"/> decides once for the run.
/// </summary>
internal sealed class EpochPlan
{
    private readonly TrainingOptions options;
    private readonly Random hostShuffle;
    private readonly int[] hostOrder;

    public EpochPlan(TrainingOptions options, int rows, bool permutes)
    {
        this.options = options;
        Permutes = permutes;
        StepsPerEpoch = (rows + options.BatchSize - 1) / options.BatchSize;
        hostShuffle = new Random(options.Seed + 1);
        hostOrder = Enumerable.Range(0, rows).ToArray();
    }

    /// <summary>The plan of a run on <paramref name="device"/>, its permutations where the device plan shuffles there.</summary>
    public static EpochPlan For(ComputeDevice device, TrainingOptions options, int rows) =>
        new(options, rows, device.Plan.ShufflesOnDevice(options.ShuffleOnDevice));

    /// <summary>Whether each epoch's order is a seeded permutation (device shuffling) rather than the carried host shuffle.</summary>
    public bool Permutes { get; }

    public int StepsPerEpoch { get; }

    private int TotalSteps => StepsPerEpoch * options.Epochs;

    /// <summary>The seed of the run's permutations, one per epoch from it.</summary>
    public uint PermutationSeed => (uint)options.Seed * 747796405u + 2891336453u;

    /// <summary>The number of the epoch's first step, counted from 0.</summary>
    public int FirstStep(int epoch) => (epoch - 1) * StepsPerEpoch;

    /// <summary>
    /// The epoch's order on the host: the permutation's reference, or the next host shuffle (each epoch once, in
    /// order: the shuffle carries from one to the next).
    /// </summary>
    public void HostOrder(int epoch, Span<int> order)
    {
        if (Permutes)
        {
            Shuffle.PermuteReference(hostOrder, order, PermutationSeed, epoch); // hostOrder: the rows in order, never shuffled here
            return;
        }
        hostShuffle.Shuffle(hostOrder);
        hostOrder.CopyTo(order);
    }

    /// <summary>Each batch's Adam step of the epoch: its learning rate from the schedule, and its bias corrections.</summary>
    public void Schedule(int epoch, Span<AdamStep> schedule)
    {
        int first = FirstStep(epoch);
        for (int k = 0; k < StepsPerEpoch; k++)
            schedule[k] = AdamStep.At(first + k + 1, options.LearningRateAt(first + k + 1, TotalSteps, StepsPerEpoch), options.StepSettings);
    }
}
