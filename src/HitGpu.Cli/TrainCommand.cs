// hitgpu train: trains the network and prints one line per epoch, then the test accuracy.
using System.CommandLine;
using System.Globalization;
using HitGpu.Kernels;
using HitGpu.Nn;

namespace HitGpu.Cli;

public static class TrainCommand
{
    public static Command Create(TextWriter output)
    {
        var data = new Option<string[]>("--data") { Description = "CSV file(s) or folder(s) of them; default: the embedded 90s file", AllowMultipleArgumentsPerToken = true };
        var accelerator = new Option<string>("--accelerator") { Description = "auto, cpu, cuda or opencl", DefaultValueFactory = _ => "auto" };
        accelerator.AcceptOnlyFromAmong("auto", "cpu", "cuda", "opencl");
        var epochs = new Option<int>("--epochs") { Description = "passes over the training part", DefaultValueFactory = _ => 20 };
        var batchSize = new Option<int>("--batch-size") { Description = "songs per Adam step", DefaultValueFactory = _ => 32 };
        var hidden = new Option<string>("--hidden") { Description = "hidden layer widths, comma-separated", DefaultValueFactory = _ => "64,32" };
        var learningRate = new Option<float>("--learning-rate") { Description = "Adam's learning rate", DefaultValueFactory = _ => 1e-3f };
        var seed = new Option<int>("--seed") { Description = "seed of the split, the initial weights and the shuffling", DefaultValueFactory = _ => 0 };
        var validationSplit = new Option<double>("--validation-split") { Description = "fraction of each class held out for validation", DefaultValueFactory = _ => 0.15 };
        var testSplit = new Option<double>("--test-split") { Description = "fraction of each class held out for the final test", DefaultValueFactory = _ => 0.15 };

        var command = new Command("train", "Train the hit predictor and report train, validation and test accuracy")
        {
            data, accelerator, epochs, batchSize, hidden, learningRate, seed, validationSplit, testSplit,
        };
        command.SetAction(parsed =>
        {
            var options = new TrainingOptions
            {
                Epochs = parsed.GetValue(epochs),
                BatchSize = parsed.GetValue(batchSize),
                Hidden = HitGpuCli.ParseWidths(parsed.GetValue(hidden)!),
                LearningRate = parsed.GetValue(learningRate),
                Seed = parsed.GetValue(seed),
                ValidationFraction = parsed.GetValue(validationSplit),
                TestFraction = parsed.GetValue(testSplit),
            };
            options.Validate();
            var paths = parsed.GetValue(data);
            var table = paths is { Length: > 0 } ? SongData.LoadMany(paths) : SongData.LoadEmbedded90s();
            using var device = ComputeDevice.Open(ComputeDevice.ParseKind(parsed.GetValue(accelerator)!));
            output.WriteLine($"hitgpu train: {table.Count} songs from {table.Source}; network {string.Join("-", ParameterLayout.ForClassifier(SongData.FeatureCount, options.Hidden).Widths)}; " +
                $"{options.Epochs} epochs, batch {options.BatchSize}, Adam lr {F(options.LearningRate)}, seed {options.Seed}; accelerator {device.Kind.ToString().ToLowerInvariant()} ({device.Name})");
            var result = Trainer.Train(device, table, options, m => output.WriteLine(
                $"epoch {m.Epoch.ToString().PadLeft(options.Epochs.ToString().Length)}/{options.Epochs}  " +
                $"loss {m.TrainLoss:F4}  accuracy {Percent(m.TrainAccuracy)}  val_loss {m.ValidationLoss:F4}  val_accuracy {Percent(m.ValidationAccuracy)}  {m.Seconds:F2} s"));
            output.WriteLine($"test accuracy {Percent(result.TestAccuracy)}  test loss {result.TestLoss:F4}  " +
                $"({result.TrainRows} train / {result.ValidationRows} validation / {result.TestRows} test songs, {result.Seconds:F1} s)");
            return HitGpuCli.Ok;
        });
        return command;
    }

    internal static string Percent(double fraction) => (fraction * 100).ToString("F2", CultureInfo.InvariantCulture) + "%";

    private static string F(float value) => value.ToString(CultureInfo.InvariantCulture);
}
