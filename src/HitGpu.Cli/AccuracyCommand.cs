// hitgpu accuracy: the accuracy protocol over decades and seeds (see AccuracyProtocol), printed as the
// table of docs/ACCURACY.md with the peers beside our row; --out writes that file.
using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using HitGpu.Nn;

namespace HitGpu.Cli;

public static class AccuracyCommand
{
    public static Command Create(TextWriter output)
    {
        var folder = HitGpuCli.PathOption("--data-dir", "folder with dataset-of-60s.csv ... dataset-of-10s.csv", required: true);
        var decades = new Option<string>("--decades") { Description = "decades to run, comma-separated",
            DefaultValueFactory = _ => string.Join(",", AccuracyProtocol.Decades) };
        var seeds = new Option<string>("--seeds") { Description = "seeds of the runs, comma-separated", DefaultValueFactory = _ => "0,1,2,3,4" };
        var outPath = HitGpuCli.PathOption("--out", "write the report (markdown) to this file");
        var tune = new Option<bool>("--tune")
            { Description = "report the validation part's accuracy instead, for choosing options (the test part is not reported)" };
        var candidates = HitGpuCli.PathOption("--candidates", "with --tune: a file of training options, one candidate a line (the first the " +
            "baseline; 'defaults' for none; # comments); trains every candidate's runs and prints one ranked table, which --out writes");
        var accelerator = HitGpuCli.AcceleratorOption();
        var training = new TrainingArguments();
        var command = new Command("accuracy", "Run the accuracy protocol over decades and seeds and compare with the peers")
            { folder, decades, seeds, outPath, tune, candidates, accelerator };
        training.AddTo(command);
        command.SetAction(parsed =>
        {
            var options = training.Read(parsed);
            bool tuning = parsed.GetValue(tune);
            string? candidatesFile = parsed.GetValue(candidates);
            if (candidatesFile is not null && !tuning)
                throw new ArgumentException("--candidates ranks options on the validation part: it needs --tune");
            if (candidatesFile is not null && training.All.FirstOrDefault(o => parsed.GetResult(o) is { Implicit: false }) is { } given)
                throw new ArgumentException($"with --candidates the training options go in the file, one candidate a line ({given.Name} was given here)");
            if (tuning && candidatesFile is null && parsed.GetValue(outPath) is not null)
                throw new ArgumentException("--tune reports validation accuracy, which is not the report --out writes; leave one of them out");
            var seedList = parsed.GetValue(seeds)!.Split(',').Select(s => int.TryParse(s.Trim(), out int v) ? v
                : throw new ArgumentException($"--seeds takes whole numbers separated by commas, got '{parsed.GetValue(seeds)}'")).ToArray();
            var decadeList = parsed.GetValue(decades)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (decadeList.Length == 0)
                throw new ArgumentException($"--decades names no decade (expected some of {string.Join(", ", AccuracyProtocol.Decades)})");
            foreach (var d in decadeList)
                if (!AccuracyProtocol.Decades.Contains(d))
                    throw new ArgumentException($"unknown decade '{d}' (expected {string.Join(", ", AccuracyProtocol.Decades)})");
            var files = decadeList.Select(d => Path.Combine(parsed.GetValue(folder)!, $"dataset-of-{d}.csv")).ToArray();
            HitGpuCli.CheckOutputs([parsed.GetValue(outPath)], [], [.. files, candidatesFile]);
            var candidateList = candidatesFile is null ? null : ReadCandidates(candidatesFile);
            var data = decadeList.Zip(files, (d, file) => (d, SongData.Load(file))).ToList();
            using var device = HitGpuCli.OpenDevice(parsed.GetValue(accelerator)!);
            if (candidateList is not null)
                return Rank(output, device, data, seedList, candidateList, parsed.GetValue(outPath));
            output.WriteLine($"hitgpu accuracy: {TrainingArguments.Describe(options)}; seeds {string.Join(",", seedList)}; accelerator " +
                $"{HitGpuCli.Describe(device)}");
            var results = AccuracyProtocol.Run(device, data, seedList, options with { Seed = seedList[0] }, output.WriteLine, tuning);
            if (tuning)
            {
                output.WriteLine();
                // The half of the validation part that early stopping never saw (AccuracyProtocol.Run).
                output.WriteLine("| decade | validation accuracy, held-out half (%) | validation ROC AUC |");
                output.WriteLine("|---|---:|---:|");
                foreach (var r in results)
                    output.WriteLine(FormattableString.Invariant($"| {r.Decade} | {r.Mean * 100:F2} ± {r.Deviation * 100:F2} | {r.MeanAuc:F4} |"));
                output.WriteLine(FormattableString.Invariant($"mean validation accuracy over {results.Count} decades: ") +
                    FormattableString.Invariant($"{results.Average(r => r.Mean) * 100:F2}%"));
                return HitGpuCli.Ok;
            }
            string commandLine = "hitgpu " + string.Join(" ", parsed.Tokens.Select(t => t.Value));
            string machine = $"{Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, {HitGpuCli.Describe(device)}, " +
                DateTime.UtcNow.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
            string table = AccuracyProtocol.Markdown(results, seedList, commandLine, machine);
            output.WriteLine();
            output.Write(table);
            if (OutputTarget.NamesStandardOutput(parsed.GetValue(outPath)))
            {
                output.Write(Report(table, results, options)); // "-", /dev/stdout: the whole report after the table, on standard output
            }
            else if (parsed.GetValue(outPath) is { } path)
            {
                AtomicFile.WriteText(path, Report(table, results, options) + KeptNotes(path));
                output.WriteLine($"report written to {path}");
            }
            return HitGpuCli.Ok;
        });
        return command;
    }

    /// <summary>The candidates of a --candidates file: each line's number, its text and its options (blank lines and # comments skipped).</summary>
    private static IReadOnlyList<(int Line, string Text, TrainingOptions Options)> ReadCandidates(string file)
    {
        var list = new List<(int, string, TrainingOptions)>();
        string[] lines = File.ReadAllLines(file);
        for (int i = 0; i < lines.Length; i++)
        {
            string text = (lines[i].IndexOf('#') is int hash and >= 0 ? lines[i][..hash] : lines[i]).Trim();
            if (text.Length > 0)
                list.Add((i + 1, text, TrainingArguments.ReadLine(text, file, i + 1)));
        }
        return list.Count > 0 ? list : throw new
            InputException($"{file}: no candidate in it (one line of training options a candidate, the first the baseline)");
    }

    /// <summary>--tune --candidates: every candidate's runs, then the ranked table (written to --out too).</summary>
    private static int Rank(TextWriter output, HitGpu.Kernels.ComputeDevice device, IReadOnlyList<(string, SongTable)> data, int[] seeds,
        IReadOnlyList<(int Line, string Text, TrainingOptions Options)> candidates, string? outPath)
    {
        int perCandidate = data.Count * seeds.Length;
        output.WriteLine($"hitgpu accuracy --tune: {candidates.Count} candidates x {data.Count} decades x {seeds.Length} seeds = " +
            $"{candidates.Count * perCandidate} runs; accelerator {HitGpuCli.Describe(device)}");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var results = AccuracyProtocol.TrainRuns(device, data, seeds, candidates.Select(c => c.Options).ToArray(), tuning: true, log: null,
            progress: (done, all) => output.WriteLine(FormattableString.Invariant($"runs {done}/{all}, {done / clock.Elapsed.TotalSeconds:F2} runs/s")));
        var scores = AccuracyProtocol.Rank(candidates.Select(c => (c.Line, c.Text)).ToArray(), results);
        string table = AccuracyProtocol.RankedTable(scores, perCandidate);
        output.WriteLine();
        output.Write(table);
        if (OutputTarget.NamesStandardOutput(outPath))
            return HitGpuCli.Ok; // the table is on standard output already
        if (outPath is not null)
        {
            AtomicFile.WriteText(outPath, table);
            output.WriteLine($"ranked table written to {outPath}");
        }
        return HitGpuCli.Ok;
    }

    /// <summary>A line in the report after which the text is written by hand and kept when the report is made again.</summary>
    public const string NotesMarker = "<!-- Written by hand below this line; `hitgpu accuracy --out` keeps it. -->";

    private static string KeptNotes(string path)
    {
        if (!AtomicFile.IsRegularFile(path)) // nothing kept from a device or a stream (reading /dev/full would never end)
            return "";
        string old = File.ReadAllText(path);
        int at = old.IndexOf(NotesMarker, StringComparison.Ordinal);
        return at >= 0 ? "\n" + old[at..] : "";
    }

    private static string Report(string table, IReadOnlyList<DecadeResult> results, TrainingOptions options)
    {
        string F(double v) => (v * 100).ToString("F2", CultureInfo.InvariantCulture);
        var perSeed = string.Join("\n", results.Select(r => $"| {r.Decade} | {string.Join(" | ", r.Accuracies.Select(F))} |"));
        return $"""
            # Accuracy against the peers

            Protocol: for each decade file and each seed, a stratified split (70% train, the rest halved into
            validation and test) seeded by the run's seed; standardisation fitted on the training part; anything
            tuned sees the validation part only; the test part is read once per run, at threshold 0.5. The peers'
            rows were measured on the same protocol and are quoted from the issue that set the goal.

            Configuration (HitGpu's defaults): {TrainingArguments.Describe(options with { Seed = 0 }).Replace("; seed 0", "")}.

            {table}
            Test accuracy per seed (%):

            | decade | {string.Join(" | ", results[0].Accuracies.Select((_, i) => $"run {i + 1}"))} |
            |---|{string.Concat(results[0].Accuracies.Select(_ => "---|"))}
            {perSeed}
            """ + "\n";
    }
}
