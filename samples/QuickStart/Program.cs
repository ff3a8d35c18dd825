// HitGpu as a library: train on the embedded 90s songs, save, load, evaluate and predict, with progress and
// cancellation. `dotnet run --project samples/QuickStart`
using HitGpu.Kernels;
using HitGpu.Nn;

using var device = ComputeDevice.Open(); // the best accelerator present: CUDA, then OpenCL, then the CPU
var songs = SongData.LoadEmbedded90s();

// Train (Ctrl+C cancels between epochs), reporting each epoch.
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
var progress = new Progress<EpochMetrics>(m => Console.WriteLine($"epoch {m.Epoch}: validation accuracy {m.ValidationAccuracy:P1}"));
var result = Trainer.Train(device, songs, TrainingOptions.Study with { Epochs = 5 }, progress, cancel.Token);
Console.WriteLine($"test accuracy {result.TestAccuracy:P2}");

// Save, load, evaluate on the held-out test part, and predict the first five songs.
string path = Path.Combine(Path.GetTempPath(), "quickstart.hitgpu");
ModelFile.Save(result.Model, path);
var model = ModelFile.Load(path);
var test = songs.Subset(result.Split.Test);
Console.WriteLine($"reloaded model, test accuracy {model.Evaluate(device, test).Accuracy:P2}");
var first = songs.Subset([0, 1, 2, 3, 4]);
var p = model.PredictProbabilities(device, first);
for (int i = 0; i < first.Count; i++)
    Console.WriteLine($"{first.Tracks![i]} ({first.Artists![i]}): P(hit) = {p[i]:F3}");
File.Delete(path);
