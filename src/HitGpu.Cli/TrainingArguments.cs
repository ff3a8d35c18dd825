// The options that shape training, shared by `hitgpu train` and `hitgpu accuracy`; defaults come from
// TrainingOptions, so the CLI and the library cannot drift apart.
using System.CommandLine;
using HitGpu.Kernels;
using HitGpu.Nn;

namespace HitGpu.Cli;

public sealed class TrainingArguments
{
    private static readonly TrainingOptions Defaults = new();

    public Option<int> Epochs { get; } = new("--epochs") { Description = "passes over the training part", DefaultValueFactory = _ => Defaults.Epochs };
    public Option<int> BatchSize { get; } = new("--batch-size") { Description = "songs per Adam step", DefaultValueFactory = _ => Defaults.BatchSize };
    public Option<string> Hidden { get; } = new("--hidden") { Description = "hidden layer widths, comma-separated",
        DefaultValueFactory = _ => string.Join(",", Defaults.Hidden) };
    public Option<float> LearningRate { get; } = new("--learning-rate") { Description = "Adam's learning rate",
        DefaultValueFactory = _ => Defaults.LearningRate };
    public Option<float> WeightDecay { get; } = new("--weight-decay") { Description = "decoupled weight decay (AdamW); 0 = plain Adam",
        DefaultValueFactory = _ => Defaults.WeightDecay };
    public Option<string> Schedule { get; } = new("--schedule") { Description = "learning rate after the warm-up: constant or cosine",
        DefaultValueFactory = _ => Defaults.Schedule.ToString().ToLowerInvariant() };
    public Option<int> WarmupEpochs { get; } = new("--warmup-epochs") { Description = "epochs of linear learning-rate warm-up",
        DefaultValueFactory = _ => Defaults.WarmupEpochs };
    public Option<int> Seed { get; } = new("--seed") { Description = "seed of the split, the initial weights and the shuffling",
        DefaultValueFactory = _ => Defaults.Seed };
    public Option<double> ValidationSplit { get; } = new("--validation-split")
        { Description = "fraction of each class held out for validation", DefaultValueFactory = _ => Defaults.ValidationFraction };
    public Option<double> TestSplit { get; } = new("--test-split") { Description = "fraction of each class held out for the final test",
        DefaultValueFactory = _ => Defaults.TestFraction };
    public Option<int> EarlyStopping { get; } = new("--early-stopping") { Description =
        "stop after this many epochs without a better validation figure (--select-on) and keep the best epoch's weights (0 = off)",
        DefaultValueFactory = _ => Defaults.EarlyStoppingPatience };
    public Option<int> Ensemble { get; } = new("--ensemble") { Description =
        "members trained together in one network, on the same batches; their probabilities are averaged (1 = one plain network)",
        DefaultValueFactory = _ => Defaults.EnsembleSize };
    public Option<string> EnsembleKind { get; } = new("--ensemble-kind") { Description = "what the members share: independent (nothing: k full " +
        "networks), batch (TabM's BatchEnsemble: shared weights, per-member scales, biases and heads) or mini (TabM-mini: per-member input scales " +
        "and heads, one shared MLP)", DefaultValueFactory = _ => Defaults.EnsembleKind.ToString().ToLowerInvariant() };
    public Option<string> LogFeatures { get; } = new("--log-features") { Description =
        "features replaced by log(1 + x), comma-separated, or 'skewed'", DefaultValueFactory = _ => string.Join(",", Defaults.Encoding.LogFeatures) };
    public Option<string> OneHot { get; } = new("--one-hot") { Description = "features one-hot encoded (key, time_signature), comma-separated",
        DefaultValueFactory = _ => string.Join(",", Defaults.Encoding.OneHotFeatures) };
    public Option<string> Embedding { get; } = new("--embedding") { Description = "a learned per-feature embedding before the MLP: none, " +
        "piecewise (TabM's piecewise-linear embeddings, version B; its inputs replace --inputs) or periodic (cos(2 pi w x + b) of learned " +
        "frequencies, a linear map, ReLU)", DefaultValueFactory = _ => Defaults.Embedding.ToString().ToLowerInvariant() };
    public Option<int> EmbeddingFrequencies { get; } = new("--embedding-frequencies")
        { Description = "learned frequencies per feature of the periodic embedding", DefaultValueFactory = _ => Defaults.EmbeddingFrequencies };
    public Option<int> EmbeddingBins { get; } = new("--embedding-bins") { Description = "quantile bins of the piecewise-linear embedding",
        DefaultValueFactory = _ => Defaults.EmbeddingBins };
    public Option<int> EmbeddingDimension { get; } = new("--embedding-dim")
        { Description = "outputs per feature of the embedding", DefaultValueFactory = _ => Defaults.EmbeddingDimension };
    public Option<float> LabelSmoothing { get; } = new("--label-smoothing")
        { Description = "train towards y (1 - e) + e / 2 instead of the 0/1 label (RealMLP; 0 = off)", DefaultValueFactory = _ => Defaults.LabelSmoothing };
    public Option<string> SelectOn { get; } = new("--select-on") { Description =
        "what early stopping watches on the validation part, and the epoch kept: loss or accuracy",
        DefaultValueFactory = _ => Defaults.SelectOn.ToString().ToLowerInvariant() };
    public Option<float> Dropout { get; } = new("--dropout") { Description = "probability of dropping each hidden unit while training (0 = off)",
        DefaultValueFactory = _ => Defaults.Dropout };
    public Option<string> Inputs { get; } = new("--inputs") { Description = "input transform before standardising: standard (none), quantile " +
        "(normal score of the rank among the training values), piecewise (piecewise-linear over quantile bins) or robust (RealMLP's: (x - median) " +
        "/ IQR, smoothly clipped by x / sqrt(1 + (x / 3)^2))", DefaultValueFactory = _ => Defaults.Inputs.Scaling.ToString().ToLowerInvariant() };
    public Option<int> PiecewiseBins { get; } = new("--piecewise-bins") { Description =
        "quantile bins of the piecewise-linear inputs (implies --inputs piecewise)", DefaultValueFactory = _ => DefaultPiecewiseBins };

    private const int DefaultPiecewiseBins = 8;
    public Option<int> AverageLast { get; } = new("--average-last") { Description =
        "keep the mean of the weights over the last this many epochs (0 = the last epoch's)", DefaultValueFactory = _ => Defaults.AverageLastEpochs };
    public Option<bool> DropDuplicates { get; } = new("--drop-duplicates") { Description =
        "drop the songs that repeat an earlier one (same uri, or the same features and target) before splitting",
        DefaultValueFactory = _ => Defaults.DropDuplicates };
    public Option<bool> Study { get; } = new("--study")
        { Description = "the original study's setup: one 15-64-32-1 network, Adam 1e-3, 20 epochs, raw standardised features" };

    public TrainingArguments()
    {
        Schedule.AcceptOnlyFromAmong("constant", "cosine");
        Inputs.AcceptOnlyFromAmong("standard", "quantile", "piecewise", "robust");
        EnsembleKind.AcceptOnlyFromAmong("independent", "batch", "mini");
        Embedding.AcceptOnlyFromAmong("none", "piecewise", "periodic");
        SelectOn.AcceptOnlyFromAmong("loss", "accuracy");
    }

    /// <summary>Every training option.</summary>
    public IReadOnlyList<Option> All => [Epochs, BatchSize, Hidden, LearningRate, WeightDecay, Schedule, WarmupEpochs, Seed, ValidationSplit, TestSplit,
        EarlyStopping, SelectOn, Ensemble, EnsembleKind, Embedding, EmbeddingBins, EmbeddingDimension, EmbeddingFrequencies, Dropout, LabelSmoothing,
            LogFeatures, OneHot, Inputs, PiecewiseBins, AverageLast, DropDuplicates, Study];

    public void AddTo(Command command)
    {
        foreach (var option in All)
            command.Add(option);
    }

    /// <summary>
    /// The options of one line of a candidates file (`hitgpu accuracy --tune --candidates`): the same options
    /// as the command line, from the defaults (or the study's, with --study); "defaults" alone is the defaults.
    /// A mistake is refused naming the file, the line and the column of the word it is about.
    /// </summary>
    public static TrainingOptions ReadLine(string line, string file, int lineNumber)
    {
        var arguments = new TrainingArguments();
        var command = new Command("candidate");
        arguments.AddTo(command);
        string text = line.Trim() == "defaults" ? "" : line;
        var parsed = command.Parse(text);
        string? problem = parsed.Errors.Count > 0 ? parsed.Errors[0].Message : null;
        if (problem is null)
        {
            try
            {
                return arguments.Read(parsed);
            }
            catch (ArgumentException e)
            {
                problem = e.Message;
            }
        }
        // The column of the first word the message quotes, else of the line's first word.
        var words = System.Text.RegularExpressions.Regex.Matches(line, @"\S+");
        var quoted = words.FirstOrDefault(w => problem.Contains($"'{w.Value}'", StringComparison.Ordinal)
            || problem.Contains(w.Value, StringComparison.Ordinal) && w.Value.StartsWith("--", StringComparison.Ordinal));
        int column = (quoted ?? words.FirstOrDefault())?.Index + 1 ?? 1;
        throw new InputException($"{file}: line {lineNumber}, column {column}: {problem}");
    }

    /// <summary>The options as given; --study starts from the study's setup instead of the defaults, and options named explicitly still apply.</summary>
    public TrainingOptions Read(ParseResult parsed)
    {
        var start = parsed.GetValue(Study) ? TrainingOptions.Study : Defaults;
        T Get<T>(Option<T> option, T fallback) => parsed.GetResult(option) is { Implicit: false } ? parsed.GetValue(option)! : fallback;
        var options = start with
        {
            Epochs = Get(Epochs, start.Epochs),
            BatchSize = Get(BatchSize, start.BatchSize),
            Hidden = parsed.GetResult(Hidden) is { Implicit: false } ? HitGpuCli.ParseWidths(parsed.GetValue(Hidden)!) : start.Hidden,
            LearningRate = Get(LearningRate, start.LearningRate),
            WeightDecay = Get(WeightDecay, start.WeightDecay),
            Schedule = parsed.GetResult(Schedule) is { Implicit: false } ? Enum.Parse<LearningRateSchedule>(parsed.GetValue(Schedule)!,
                ignoreCase: true) : start.Schedule,
            WarmupEpochs = Get(WarmupEpochs, start.WarmupEpochs),
            Seed = parsed.GetValue(Seed),
            ValidationFraction = parsed.GetValue(ValidationSplit),
            TestFraction = parsed.GetValue(TestSplit),
            EarlyStoppingPatience = Get(EarlyStopping, start.EarlyStoppingPatience),
            EnsembleSize = Get(Ensemble, start.EnsembleSize),
            EnsembleKind = parsed.GetResult(EnsembleKind) is { Implicit: false }
                ? Enum.Parse<EnsembleKind>(parsed.GetValue(EnsembleKind)!, ignoreCase: true) : start.EnsembleKind,
            Embedding = parsed.GetResult(Embedding) is { Implicit: false } ?
                Enum.Parse<NumericEmbedding>(parsed.GetValue(Embedding)!, ignoreCase: true) : start.Embedding,
            EmbeddingBins = Get(EmbeddingBins, start.EmbeddingBins),
            EmbeddingFrequencies = Get(EmbeddingFrequencies, start.EmbeddingFrequencies),
            LabelSmoothing = Get(LabelSmoothing, start.LabelSmoothing),
            SelectOn = parsed.GetResult(SelectOn) is { Implicit: false } ? Enum.Parse<SelectionMetric>(parsed.GetValue(SelectOn)!, ignoreCase: true)
                : start.SelectOn,
            EmbeddingDimension = Get(EmbeddingDimension, start.EmbeddingDimension),
            Encoding = parsed.GetResult(LogFeatures) is { Implicit: false } || parsed.GetResult(OneHot) is { Implicit: false }
                ? new FeatureEncoding(
                    Names(Get(LogFeatures, string.Join(",", start.Encoding.LogFeatures)), "skewed", FeatureEncoding.SkewedFeatures),
                    Names(Get(OneHot, string.Join(",", start.Encoding.OneHotFeatures)), "categorical", FeatureEncoding.CategoricalFeatures))
                : start.Encoding,
            Inputs = ReadInputs(parsed, start.Inputs),
            AverageLastEpochs = Get(AverageLast, start.AverageLastEpochs),
            Dropout = Get(Dropout, start.Dropout),
            DropDuplicates = Get(DropDuplicates, start.DropDuplicates),
        };
        options.Validate();
        return options;
    }

    /// <summary>--inputs and --piecewise-bins as one transform: bins alone mean piecewise; bins with another transform are a mistake.</summary>
    private InputTransform ReadInputs(ParseResult parsed, InputTransform start)
    {
        bool binsGiven = parsed.GetResult(PiecewiseBins) is { Implicit: false };
        var scaling = parsed.GetResult(Inputs) is { Implicit: false }
            ? Enum.Parse<InputScaling>(parsed.GetValue(Inputs)!, ignoreCase: true)
            : binsGiven ? InputScaling.Piecewise : start.Scaling;
        if (scaling != InputScaling.Piecewise)
            return binsGiven
                ? throw new ArgumentException($"--piecewise-bins applies to --inputs piecewise only, not {scaling.ToString().ToLowerInvariant()}")
                : new InputTransform(scaling);
        return InputTransform.Piecewise(binsGiven ? parsed.GetValue(PiecewiseBins) : start.Scaling == InputScaling.Piecewise ? start.Bins
            : DefaultPiecewiseBins);
    }

    private static string[] Names(string text, string groupName, string[] group) =>
        text.Trim() == groupName ? group : text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public static string Describe(TrainingOptions o) =>
        $"network {string.Join("-", o.LayoutFor(o.Encoding).Widths)}" +
        o.Embedding switch
        {
            NumericEmbedding.Piecewise => $" (piecewise embedding: {o.EmbeddingBins} bins to {o.EmbeddingDimension} per feature)",
            NumericEmbedding.Periodic => $" (periodic embedding: {o.EmbeddingFrequencies} frequencies to {o.EmbeddingDimension} per feature)",
            _ => "",
        } +
        (o.EnsembleSize > 1 ? $" x {o.EnsembleSize} members ({o.EnsembleKind.ToString().ToLowerInvariant()} ensemble, one pass)" : "") +
        $"; {o.Epochs} epochs, batch {o.BatchSize}, Adam lr {HitGpuCli.Number(o.LearningRate)}" +
        (o.WeightDecay > 0 ? $", weight decay {HitGpuCli.Number(o.WeightDecay)}" : "") +
        (o.Schedule != LearningRateSchedule.Constant || o.WarmupEpochs > 0 ?
            $", {o.Schedule.ToString().ToLowerInvariant()} schedule, {o.WarmupEpochs} warm-up epochs" : "") +
        (o.EarlyStoppingPatience > 0 ? $", early stopping {o.EarlyStoppingPatience} on validation {o.SelectOn.ToString().ToLowerInvariant()}" : "") +
        (o.LabelSmoothing > 0 ? $", label smoothing {HitGpuCli.Number(o.LabelSmoothing)}" : "") +
        (o.Dropout > 0 ? $", dropout {HitGpuCli.Number(o.Dropout)}" : "") +
        (o.AverageLastEpochs > 0 ? $", weights averaged over the last {o.AverageLastEpochs} epochs" : "") +
        (o.DropDuplicates ? ", duplicates dropped" : "") +
        (o.Encoding.LogFeatures.Count > 0 ? $"; log1p of {string.Join(",", o.Encoding.LogFeatures)}" : "") +
        (o.Encoding.OneHotFeatures.Count > 0 ? $"; one-hot {string.Join(",", o.Encoding.OneHotFeatures)}" : "") +
        (o.InputTransform.Scaling != InputScaling.Standard ? $"; {o.InputTransform.Description}" : "") +
        $"; seed {o.Seed}";
}
