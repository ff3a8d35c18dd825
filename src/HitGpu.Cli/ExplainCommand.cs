// hitgpu explain: why songs are predicted hits. Per song, each feature's contribution to its probability
// (integrated gradients from the training medians); with --global, on labelled songs, each feature's permutation
// importance (the accuracy lost when it is shuffled) and its bar chart. CSV to stdout or --out.
using System.CommandLine;
using System.Globalization;
using CsvHelper;
using HitGpu.Nn;

namespace HitGpu.Cli;

public static class ExplainCommand
{
    public static Command Create(TextWriter output)
    {
        var model = HitGpuCli.PathOption("--model", "model file written by hitgpu train --out", required: true);
        var data = HitGpuCli.PathOption("--data", "CSV of songs (with target for --global)", required: true);
        var accelerator = HitGpuCli.AcceleratorOption();
        var outPath = HitGpuCli.PathOption("--out", "write the CSV to this file instead of stdout");
        var global = new Option<bool>("--global")
            { Description = "permutation importance of each feature over the labelled songs, instead of per-song contributions" };
        var steps = new Option<int>("--steps") { Description = "points on each song's integrated-gradients path", DefaultValueFactory = _ => 64 };
        var plot = HitGpuCli.PathOption("--plot", "with --global: write importance.png into this folder");
        var format = new HitGpuCli.FormatOptions();
        var command = new Command("explain", "Explain predictions: per-song feature contributions, or global feature importance")
            { model, data, accelerator, outPath, global, steps, plot };
        format.AddTo(command);
        command.SetAction(parsed =>
        {
            bool isGlobal = parsed.GetValue(global);
            string? plotFolder = parsed.GetValue(plot), path = parsed.GetValue(outPath);
            if (plotFolder is not null && !isGlobal)
                throw new ArgumentException("--plot draws the global importances: add --global");
            if (parsed.GetValue(steps) < 1)
                throw new ArgumentException($"--steps must be at least 1, got {parsed.GetValue(steps)}");
            HitGpuCli.CheckOutputs([path, plotFolder is null ? null : Path.Combine(plotFolder, Plots.ImportanceFile)], [plotFolder],
                [parsed.GetValue(model), parsed.GetValue(data)]);
            var hitModel = ModelFile.Load(parsed.GetValue(model)!);
            var songs = SongData.Load(parsed.GetValue(data)!, requireTarget: isGlobal, format: format.Read(parsed));
            using var device = HitGpuCli.OpenDevice(parsed.GetValue(accelerator)!);
            string csv;
            Action drawPlot = () => { };
            if (isGlobal)
            {
                var importance = Explain.PermutationImportance(device, hitModel, songs);
                csv = Csv(["feature", "accuracy_lost"], Enumerable.Range(0, SongData.FeatureCount).OrderByDescending(c => importance[c])
                    .Select(c => new[] { SongData.FeatureNames[c], importance[c].ToString("F4", CultureInfo.InvariantCulture) }));
                if (plotFolder is not null)
                    drawPlot = () => Plots.Bars(SongData.FeatureNames, importance,
                        $"Permutation importance ({songs.Count} songs of {Path.GetFileName(songs.Source)})",
                        "accuracy lost when the feature is shuffled", Path.Combine(plotFolder, Plots.ImportanceFile));
            }
            else
            {
                var a = Explain.IntegratedGradients(device, hitModel, songs, parsed.GetValue(steps));
                bool names = songs.Tracks is not null && songs.Artists is not null;
                string F(float v) => v.ToString("F6", CultureInfo.InvariantCulture);
                csv = Csv([.. names ? new[] { "track", "artist" } : ["row"], "probability", "baseline_probability", .. SongData.FeatureNames],
                    Enumerable.Range(0, a.Count).Select(i => (string[])[
                        .. names ? new[] { songs.Tracks![i], songs.Artists![i] } : [(i + 1).ToString(CultureInfo.InvariantCulture)],
                        F(a.Probabilities[i]), F(a.BaselineProbability), .. a.Of(i).ToArray().Select(F)]));
            }
            string? file = OutputTarget.NamesStandardOutput(path) ? null : path; // "-", /dev/stdout: standard output, as without --out
            HitGpuCli.WriteAll([plotFolder], () =>
            {
                if (file is not null)
                    AtomicFile.WriteText(file, csv);
                drawPlot();
            });
            if (file is not null)
                output.WriteLine($"{(isGlobal ? "feature importances" : $"contributions of {songs.Count} songs")} written to {file}");
            else
                output.Write(csv);
            if (plotFolder is not null)
                output.WriteLine($"chart written to {Path.Combine(plotFolder, Plots.ImportanceFile)}");
            return HitGpuCli.Ok;
        });
        return command;
    }

    private static string Csv(string[] header, IEnumerable<string[]> rows)
    {
        var text = new StringWriter();
        using (var writer = CsvWriter.Create(text, SongData.WriterOptions, leaveOpen: true))
        {
            writer.WriteRecord(header);
            foreach (var row in rows)
                writer.WriteRecord(row);
        }
        return text.ToString();
    }
}
