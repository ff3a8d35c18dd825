// The accuracy protocol of docs/ACCURACY.md: for each decade and each seed, a stratified 70/15/15 split
// seeded by the run's seed, standardisation fitted on the training part, training (tuning sees only the
// validation part), and the test part read once, at threshold 0.5. Reports mean and deviation over seeds.
using System.Globalization;
using System.Text;
using HitGpu.Kernels;

namespace HitGpu.Nn;

public sealed record DecadeResult(string Decade, IReadOnlyList<double> Accuracies, IReadOnlyList<double> RocAucs)
{
    public double Mean => Accuracies.Average();
    /// <summary>Sample standard deviation over the seeds (n - 1 in the denominator).</summary>
    public double Deviation => StandardDeviation(Accuracies);
    public double MeanAuc => RocAucs.Average();

    public static double StandardDeviation(IReadOnlyList<double> values)
    {
        if (values.Count < 2)
            return 0;
        double mean = values.Average();
        return Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
    }
}

public static class AccuracyProtocol
{
    /// <summary>The decades in the table's order, as they appear in the dataset's file names (dataset-of-60s.csv ...).</summary>
    public static readonly string[] Decades = ["60s", "70s", "80s", "90s", "00s", "10s"];

    /// <summary>
    /// The peers' test accuracies (mean, std over seeds 0-4, in %), measured on this protocol and given in the
    /// issue that set the goal; our row is measured by <see cref="Run"/>.
    /// </summary>
    public static readonly (string Name, double[] Mean, double[] Std)[] Peers =
    [
        ("logistic regr.", [72.4, 71.7, 76.4, 79.9, 81.7, 81.1], [1.2, 1.7, 0.8, 0.8, 1.1, 0.6]),
        ("random forest", [77.4, 77.1, 81.5, 85.3, 85.2, 84.1], [0.7, 1.3, 0.9, 0.7, 0.8, 0.9]),
        ("gradient boosting", [77.2, 76.8, 80.6, 85.1, 85.6, 84.9], [1.0, 1.2, 1.0, 0.9, 1.0, 0.7]),
        ("XGBoost", [77.5, 77.2, 81.5, 85.0, 85.5, 84.4], [1.2, 1.2, 0.9, 1.2, 1.3, 1.0]),
        ("PyTorch 15-64-32-1, 20 ep, b32", [76.4, 75.1, 81.1, 84.6, 84.3, 82.8], [0.6, 1.9, 0.9, 0.9, 1.2, 1.1]),
    ];

    /// <summary>The best peer's mean accuracy for each decade, the bar HitGpu aims at.</summary>
    public static double BestPeer(int decade) => Peers.Max(p => p.Mean[decade]);

    /// <summary>
    /// Runs the protocol and reports the test part's accuracy, or with <paramref name="tuning"/> the validation
    /// part's instead (for choosing options; then nothing of the test part is reported): the half of it that
    /// early stopping never saw, so selecting the epoch on validation earns no credit by itself.
    /// </summary>
    public static IReadOnlyList<DecadeResult> Run(ComputeDevice device, IReadOnlyList<(string Decade, SongTable Data)> decades,
        IReadOnlyList<int> seeds, TrainingOptions options, Action<string>? log = null, bool tuning = false)
    {
        var results = TrainRuns(device, decades, seeds, [options], tuning, log, progress: null)[0];
        // Decade-major: each decade's seeds in a row.
        return decades.Zip(results.Chunk(seeds.Count), (d, runs) => new DecadeResult(d.Decade,
            runs.Select(r => Reading(r, tuning).Accuracy).ToArray(), runs.Select(r => Reading(r, tuning).RocAuc).ToArray())).ToArray();
    }

    /// <summary>
    /// Every candidate's runs (each decade x each seed) trained together through <see cref="Trainer.TrainMany"/>;
    /// per candidate, its results in decade-then-seed order. Tuning reads the half of the validation part that
    /// early stopping never saw (TrainingOptions.HoldOutHalfOfValidation).
    /// </summary>
    public static IReadOnlyList<IReadOnlyList<TrainingResult>> TrainRuns(ComputeDevice device, IReadOnlyList<(string Decade, SongTable Data)> decades,
        IReadOnlyList<int> seeds, IReadOnlyList<TrainingOptions> candidates, bool tuning, Action<string>? log, Action<int, int>? progress)
    {
        string part = tuning ? "validation" : "test";
        var runs = (from options in candidates from d in decades from seed in seeds
                    select (d.Decade, Seed: seed, Run: new TrainingRun(d.Data, options with { Seed = seed, HoldOutHalfOfValidation = tuning }))).ToArray();
        var flat = Trainer.TrainMany(device, runs.Select(r => r.Run).ToArray(), (i, result) =>
        {
            var evaluation = Reading(result, tuning); // the trainer's one reading of the test part
            if (candidates.Count == 1)
                log?.Invoke($"{runs[i].Decade} seed {runs[i].Seed}: {part} accuracy {evaluation.Accuracy * 100:F2}%, ROC AUC " +
                    $"{evaluation.RocAuc:F4} ({result.Seconds:F1} s)");
            progress?.Invoke(i + 1, runs.Length);
        });
        int perCandidate = decades.Count * seeds.Count;
        return candidates.Select((_, c) => (IReadOnlyList<TrainingResult>)flat.Skip(c * perCandidate).Take(perCandidate).ToArray()).ToArray();
    }

    /// <summary>The part a run is judged on: the held-out half of validation when tuning, else the test part.</summary>
    public static Evaluation Reading(TrainingResult result, bool tuning) => tuning ? result.Validation : result.Test;

    /// <summary>
    /// One candidate's line of the ranked table: its mean validation accuracy over all its runs, the paired
    /// difference against the baseline (the same decade and seed: the same split) with its standard error,
    /// and the seconds its runs trained.
    /// </summary>
    public sealed record CandidateScore(int Line, string Options, double MeanAccuracy, double Difference, double StandardError, double Seconds);

    /// <summary>Scores per candidate (the first is the baseline), best mean validation accuracy first.</summary>
    public static IReadOnlyList<CandidateScore> Rank(IReadOnlyList<(int Line, string Options)> candidates, IReadOnlyList<IReadOnlyList<TrainingResult>> results)
    {
        var baseline = results[0].Select(r => r.Validation.Accuracy).ToArray();
        return candidates.Select((c, i) =>
        {
            var accuracies = results[i].Select(r => r.Validation.Accuracy).ToArray();
            var differences = accuracies.Zip(baseline, (a, b) => a - b).ToArray();
            double se = differences.Length > 1 ? DecadeResult.StandardDeviation(differences) / Math.Sqrt(differences.Length) : double.NaN;
            return new CandidateScore(c.Line, c.Options, accuracies.Average(), differences.Average(), se, results[i].Sum(r => r.Seconds));
        }).OrderByDescending(s => s.MeanAccuracy).ThenBy(s => s.Line).ToArray();
    }

    /// <summary>The ranked table, markdown.</summary>
    public static string RankedTable(IReadOnlyList<CandidateScore> scores, int runsPerCandidate)
    {
        string P(double v) => (v * 100).ToString("F2", CultureInfo.InvariantCulture);
        var text = new StringBuilder();
        text.AppendLine($"| rank | line | options | mean validation accuracy (%) | vs line 1 (paired, pp) | training s |");
        text.AppendLine("|---:|---:|---|---:|---:|---:|");
        int rank = 0;
        foreach (var s in scores)
            text.AppendLine($"| {++rank} | {s.Line} | {(s.Options.Length == 0 ? "(defaults)" : "`" + s.Options + "`")} | {P(s.MeanAccuracy)} | " +
                $"{(s.Difference >= 0 ? "+" : "")}{P(s.Difference)} ± {(double.IsNaN(s.StandardError) ? "-" : P(s.StandardError))} | " +
                    $"{s.Seconds.ToString("F1", CultureInfo.InvariantCulture)} |");
        text.AppendLine();
        text.AppendLine($"Each line: {runsPerCandidate} runs (decades x seeds); validation accuracy on the held-out half of the validation part;");
        text.AppendLine("the paired difference is against line 1 on the same splits, ± its standard error.");
        return text.ToString();
    }

    /// <summary>The table of docs/ACCURACY.md: the peers, our row, the gap to the best peer per decade.</summary>
    public static string Markdown(IReadOnlyList<DecadeResult> ours, IReadOnlyList<int> seeds, string commandLine, string machine)
    {
        var text = new StringBuilder();
        var columns = ours.Select(r => Array.IndexOf(Decades, r.Decade)).ToArray();
        string F(double v) => v.ToString("F1", CultureInfo.InvariantCulture);
        text.AppendLine("| decade | " + string.Join(" | ", Peers.Select(p => p.Name)) + " | **HitGpu (ours)** | ours − best peer | our ROC AUC |");
        text.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---|", Peers.Length + 3)));
        for (int k = 0; k < ours.Count; k++)
        {
            int d = columns[k];
            var r = ours[k];
            text.Append($"| {r.Decade} | ");
            text.Append(string.Join(" | ", Peers.Select(p => d >= 0 ? $"{F(p.Mean[d])} ± {F(p.Std[d])}" : "-")));
            double gap = d >= 0 ? r.Mean * 100 - BestPeer(d) : double.NaN;
            text.AppendLine($" | **{F(r.Mean * 100)} ± {F(r.Deviation * 100)}** | {(gap >= 0 ? "+" : "")}{F(gap)} | " +
                $"{r.MeanAuc.ToString("F3", CultureInfo.InvariantCulture)} |");
        }
        text.AppendLine();
        text.AppendLine($"Our row: mean ± sample standard deviation of the test accuracy over seeds {string.Join(", ", seeds)} (in %),");
        text.AppendLine($"measured by `{commandLine}` on {machine}.");
        return text.ToString();
    }
}
