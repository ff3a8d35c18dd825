// What a training run is asked for: its options (the study's and the defaults), and a run of many.
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
    /// <summary>A learned embedding of each feature before the MLP; with one, the inputs are its scores and piecewise encodings whatever
    /// <see cref="Inputs"/> says.</summary>
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
    /// <summary>Shuffle each epoch on the device (a seeded permutation kernel) or on the host; null: the accelerator's preference
    /// (<see cref="DevicePlan.ShufflesOnDevice"/>).</summary>
    public bool? ShuffleOnDevice { get; init; }
    /// <summary>Layered, the CPU epoch or the GPU epoch; null: what the accelerator prefers for the network (<see cref="DevicePlan.PathFor"/>).</summary>
    public TrainingPath? Path { get; init; }

    /// <summary>The original Keras study: one 15-64-32-1 network, Adam 1e-3, batch 32, 20 epochs, raw standardised features.</summary>
    /// <summary>
    /// The one advice for a network too large for where it trains, naming the options that shrink it as this
    /// library calls them (a front end shows its own names: the CLI its flags, HitGpuCli.InFlags).
    /// </summary>
    public const string SmallerNetwork =
        $"use a smaller {nameof(TrainingOptions)}.{nameof(BatchSize)}, {nameof(TrainingOptions)}.{nameof(Hidden)} or " +
            $"{nameof(TrainingOptions)}.{nameof(EnsembleSize)}";

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

/// <summary>One of many independent trainings (<see cref="Trainer.TrainMany"/>): its data (rows and split come from its options' seed and fractions) and
/// options.</summary>
public sealed record TrainingRun(SongTable Data, TrainingOptions Options);
