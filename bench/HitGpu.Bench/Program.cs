// BenchmarkDotNet suite (any arguments BenchmarkDotNet takes, e.g. --filter '*Kernel*'), plus the
// 'compare-run' mode that bench/compare.py calls to time HitGpu beside the PyTorch reference.
using System.Globalization;
using System.Text.Json;
using BenchmarkDotNet.Running;
using HitGpu.Kernels;
using HitGpu.Nn;

if (args.Length > 0 && args[0] == "compare-run")
    return CompareRun(args[1..]);
BenchmarkSwitcher.FromAssembly(typeof(HitGpu.Bench.BenchConfig).Assembly).Run(args);
return 0;

// Trains like `hitgpu train` after a one-epoch warm-up (kernels compiled), and prints the loop's time as JSON.
static int CompareRun(string[] args)
{
    string Arg(string name, string fallback)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? args[at + 1] : fallback;
    }
    int batch = int.Parse(Arg("--batch-size", "32"), CultureInfo.InvariantCulture);
    int epochs = int.Parse(Arg("--epochs", "20"), CultureInfo.InvariantCulture);
    string data = Arg("--data", "");
    var songs = data.Length > 0 ? SongData.Load(data) : SongData.LoadEmbedded90s();
    using var device = ComputeDevice.Open(ComputeDevice.ParseKind(Arg("--accelerator", "cpu")));
    var options = TrainingOptions.Study with { BatchSize = batch, Epochs = epochs }; // the same single network as the PyTorch reference
    Trainer.Train(device, songs, options with { Epochs = 1 });
    var result = Trainer.Train(device, songs, options);
    Console.WriteLine(JsonSerializer.Serialize(new
    {
        peer = "hitgpu",
        device = $"{device.Kind.ToString().ToLowerInvariant()} ({device.Name}, {device.Accelerator.MaxNumThreadsPerGroup} threads)",
        path = device.PreferredTrainingPath.ToString(),
        batch_size = batch,
        epochs,
        loop_seconds = result.LoopSeconds,
        samples_per_second = result.TrainRows * (double)epochs / result.LoopSeconds,
        test_accuracy = result.TestAccuracy,
    }));
    return 0;
}
