// hitgpu train: trains the network, prints one line per epoch (or a progress bar on a terminal), then the
// test accuracy; optionally saves the model, the three parts of the split and the training curves.
using System.CommandLine;
using HitGpu.Kernels;
using HitGpu.Nn;
using Spectre.Console;

namespace HitGpu.Cli;

public static class TrainCommand
{
    public static Command Create(TextWriter output, TextWriter error, bool interactive)
    {
        var data = HitGpuCli.DataOption("CSV file(s) or folder(s) of them; default: the embedded 90s file");
        var accelerator = HitGpuCli.AcceleratorOption();
        var training = new TrainingArguments();
        var format = new HitGpuCli.FormatOptions();
        var outPath = HitGpuCli.PathOption("--out", "save the model to this file (safetensors)");
        var saveSplits = HitGpuCli.PathOption("--save-splits", "write train.csv, validation.csv and test.csv into this folder");
        var plot = HitGpuCli.PathOption("--plot", "write loss.png and accuracy.png into this folder");

        var command = new Command("train", "Train the hit predictor and report train, validation and test accuracy")
            { data, accelerator, outPath, saveSplits, plot };
        training.AddTo(command);
        format.AddTo(command);
        command.SetAction(parsed =>
        {
            var options = training.Read(parsed);
            string? splitFolder = parsed.GetValue(saveSplits), plotFolder = parsed.GetValue(plot);
            if (OutputTarget.NamesStandardOutput(parsed.GetValue(outPath)))
                throw new ArgumentException("--out -: the model cannot go to standard output, which carries the epochs' lines: name a file");
            if (splitFolder == SongData.StandardStream || plotFolder == SongData.StandardStream)
                throw new ArgumentException("--save-splits and --plot name folders: '-' (standard output) cannot hold several files");
            HitGpuCli.CheckOutputs(
                [parsed.GetValue(outPath), .. SplitFiles.Select(f => In(splitFolder, f)), .. Plots.TrainingCurveFiles.Select(f => In(plotFolder, f))],
                [splitFolder, plotFolder], parsed.GetValue(data) ?? []);
            // The device first, so that its kernels load (on the CPU accelerator) while the data is read.
            using var device = HitGpuCli.OpenDevice(parsed.GetValue(accelerator)!);
            device.PrepareKernels(device.Plan.PathFor(options.Path));
            var table = HitGpuCli.LoadData(parsed.GetValue(data), keepNames: splitFolder is not null, format.Read(parsed)); // names only for the split files
            output.WriteLine($"hitgpu train: {table.Count} songs from {table.Source}; {TrainingArguments.Describe(options)}; accelerator " +
                $"{HitGpuCli.Describe(device)}");
            if (PathLine(device.Plan, options) is { } pathLine)
                output.WriteLine(pathLine);

            void Warn(string warning) => error.WriteLine($"hitgpu: warning: {HitGpuCli.InFlags(warning)}");
            var result = interactive
                ? TrainWithProgressBar(device, table, options, Warn)
                : Trainer.Train(device, table, options, m => output.WriteLine(EpochLine(m, options)), onWarning: Warn);

            output.WriteLine($"test accuracy {HitGpuCli.Percent(result.TestAccuracy)}  test loss {result.TestLoss:F4}  " +
                $"({result.TrainRows} train / {result.ValidationRows} validation / {result.TestRows} test songs, {result.Seconds:F1} s)");
            if (result.StoppedEarly is not null)
                (result.Diverged ? error : output).WriteLine($"{(result.Diverged ? "hitgpu: warning: " : "stopped early: ")}{result.StoppedEarly}");
            // The model, the splits and the plots appear together or not at all.
            string? modelPath = parsed.GetValue(outPath);
            IReadOnlyList<string> plots = [];
            HitGpuCli.WriteAll([splitFolder, plotFolder], () =>
            {
                if (modelPath is not null)
                    ModelFile.Save(result.Model, modelPath);
                if (splitFolder is not null)
                    foreach (var (name, rows) in SplitFiles.Zip([result.Split.Train, result.Split.Validation, result.Split.Test]))
                        SongData.WriteCsv(table.Subset(rows), Path.Combine(splitFolder, name));
                if (plotFolder is not null)
                    plots = Plots.TrainingCurves(result.History, plotFolder);
            });
            if (modelPath is not null)
                output.WriteLine($"model saved to {modelPath}");
            if (splitFolder is not null)
                output.WriteLine($"splits written to {splitFolder}/{string.Join(", ", SplitFiles)}");
            if (plotFolder is not null)
                output.WriteLine($"plots written: {string.Join(", ", plots)}");
            return result.Diverged ? HitGpuCli.Failure : HitGpuCli.Ok;
        });
        return command;
    }

    /// <summary>What --save-splits writes: the training, validation and test parts, in that order.</summary>
    private static readonly string[] SplitFiles = ["train.csv", "validation.csv", "test.csv"];

    private static string? In(string? folder, string file) => folder is null ? null : Path.Combine(folder, file);

    /// <summary>
    /// On a GPU, which path trains and, where it is the layered one, why not the GPU epoch (the options to
    /// shrink); null on the CPU accelerator, whose one path for training is its CPU epoch.
    /// </summary>
    public static string? PathLine(DevicePlan plan, TrainingOptions options)
    {
        if (plan.SharesHostMemory)
            return null;
        var layout = options.LayoutFor(options.Encoding);
        string? why = plan.GpuEpochDoesNotFit(layout, options.BatchSize);
        return plan.PathFor(options.Path, layout, options.BatchSize) switch
        {
            TrainingPath.GpuEpoch => "training path: the GPU epoch (one launch an epoch)",
            var path when why is not null =>
                $"training path: {path.ToString().ToLowerInvariant()}, not the GPU epoch: {why}: {HitGpuCli.InFlags(TrainingOptions.SmallerNetwork)}",
            var path => $"training path: {path.ToString().ToLowerInvariant()} ({(options.Path is null ? "HITGPU_TRAINING_PATH" : "asked for")})",
        };
    }

    public static string EpochLine(EpochMetrics m, TrainingOptions options) =>
        $"epoch {m.Epoch.ToString().PadLeft(options.Epochs.ToString().Length)}/{options.Epochs}  " +
        $"loss {m.TrainLoss:F4}  accuracy {HitGpuCli.Percent(m.TrainAccuracy)}  val_loss {m.ValidationLoss:F4}  val_accuracy " +
            $"{HitGpuCli.Percent(m.ValidationAccuracy)}  {m.Seconds:F2} s";

    /// <summary>On a terminal: one bar per epoch that fills as batches run, then shows the epoch's metrics.</summary>
    private static TrainingResult TrainWithProgressBar(ComputeDevice device, SongTable table, TrainingOptions options, Action<string> warn)
    {
        TrainingResult? result = null;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn())
            .Start(context =>
            {
                var tasks = new Dictionary<int, ProgressTask>();
                ProgressTask Task(int epoch) => tasks.TryGetValue(epoch, out var t) ? t : tasks[epoch] = context.AddTask($"epoch {epoch}/{options.Epochs}");
                result = Trainer.Train(device, table, options,
                    onEpoch: m => Task(m.Epoch).Description = Markup.Escape(EpochLine(m, options)),
                    onBatch: (epoch, done, total) =>
                    {
                        var task = Task(epoch);
                        task.MaxValue = total;
                        task.Value = done;
                    },
                    onWarning: warn);
            });
        return result!;
    }
}
