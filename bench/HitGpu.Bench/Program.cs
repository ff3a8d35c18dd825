// BenchmarkDotNet suite (any arguments BenchmarkDotNet takes, e.g. --filter '*Kernel*'), plus the
// 'compare-run' mode that bench/compare.py calls to time HitGpu beside the PyTorch reference, and the
// 'gemm' mode that times the dense forward kernel on one large square product (beside torch_matmul.py), and
// the 'resample' mode that makes large song files from the embedded 90s file (bench/scale.sh), the
// 'machine-code' mode that prints what ptxas makes of every GPU kernel (bench/gpu/machine-code.sh), and the
// 'many-runs' mode that times many study trainings through one TrainMany call (beside torch_many.py).
using System.Globalization;
using System.Text.Json;
using BenchmarkDotNet.Running;
using HitGpu.Kernels;
using HitGpu.Nn;

if (args.Length > 0 && args[0] == "compare-run")
    return CompareRun(args[1..]);
if (args.Length > 0 && args[0] == "gemm")
    return Gemm(args[1..]);
if (args.Length > 0 && args[0] == "resample")
    return Resample(args[1..]);
if (args.Length > 0 && args[0] == "load")
    return Load(args[1..]);
if (args.Length > 0 && args[0] == "machine-code")
    return MachineCode(args[1..]);
if (args.Length > 0 && args[0] == "many-runs")
    return ManyRuns(args[1..]);
BenchmarkSwitcher.FromAssembly(typeof(HitGpu.Bench.BenchConfig).Assembly).Run(args);
return 0;

// The machine-code report (bench/gpu/machine-code.sh): every GPU kernel through ptxas for sm_90, one table;
// --keep DIR leaves each kernel's PTX and SASS there; --only TEXT reads the kernels whose names contain TEXT;
// --loops also lists every innermost loop with multiply-adds of each kernel.
static int MachineCode(string[] args)
{
    if (HitGpu.MachineCode.MachineCodeReport.ToolsFolder() is not { } tools)
    {
        Console.Error.WriteLine("ptxas and cuobjdump not found: run bench/gpu/cuda-tools.sh (or set HITGPU_CUDA_TOOLS)");
        return 2;
    }
    var kernels = HitGpu.MachineCode.MachineCodeReport.ReadAll(tools,
        ArgOf(args, "--keep", "") is { Length: > 0 } keep ? keep : null, ArgOf(args, "--only", "") is { Length: > 0 } only ? only : null);
    Console.Write(HitGpu.MachineCode.MachineCodeReport.Table(kernels));
    if (args.Contains("--loops"))
        Console.Write(Environment.NewLine + HitGpu.MachineCode.MachineCodeReport.LoopLines(kernels));
    return 0;
}

// --runs R study trainings (seed r: its own split, weights and order) through one Trainer.TrainMany call, after
// a warm-up of two one-epoch runs: one JSON line with the whole call's seconds (splits and preprocessing
// included) and the total training samples per second, beside bench/reference/torch_many.py.
static int ManyRuns(string[] args)
{
    int runs = int.Parse(ArgOf(args, "--runs", "132"), CultureInfo.InvariantCulture);
    int epochs = int.Parse(ArgOf(args, "--epochs", "20"), CultureInfo.InvariantCulture);
    int batch = int.Parse(ArgOf(args, "--batch-size", "32"), CultureInfo.InvariantCulture);
    var songs = SongData.LoadEmbedded90s();
    using var device = ComputeDevice.Open(ComputeDevice.ParseKind(ArgOf(args, "--accelerator", "cpu")));
    TrainingRun[] Runs(int count, int epochCount) =>
        Enumerable.Range(0, count).Select(seed => new TrainingRun(songs, TrainingOptions.Study with
            { Seed = seed, Epochs = epochCount, BatchSize = batch })).ToArray();
    Trainer.TrainMany(device, Runs(2, 1));
    var clock = System.Diagnostics.Stopwatch.StartNew();
    var results = Trainer.TrainMany(device, Runs(runs, epochs));
    double seconds = clock.Elapsed.TotalSeconds;
    Console.WriteLine(JsonSerializer.Serialize(new
    {
        peer = "hitgpu TrainMany",
        device = $"{device.Kind.ToString().ToLowerInvariant()} ({device.Name}, {device.Accelerator.MaxNumThreadsPerGroup} threads)",
        path = results[0].Path.ToString(),
        runs,
        batch_size = batch,
        epochs,
        seconds,
        samples_per_second = results.Sum(r => (double)r.TrainRows * r.History.Count) / seconds,
        mean_test_accuracy = results.Average(r => r.TestAccuracy),
    }));
    return 0;
}

static string ArgOf(string[] args, string name, string fallback)
{
    int at = Array.IndexOf(args, name);
    return at >= 0 && at + 1 < args.Length ? args[at + 1] : fallback;
}

// y = x W^T + b at size n x n x n on random inputs (--variant simple or tiled): checked at sampled outputs
// against a float64 dot product, then timed over repeated launches (one synchronisation at the end), as
// GFLOP/s of 2 n^3 each; --product backward times dW, db and dX together instead (4 n^3).
static int Gemm(string[] args)
{
    int n = int.Parse(ArgOf(args, "--size", "4096"), CultureInfo.InvariantCulture);
    int repeats = int.Parse(ArgOf(args, "--repeats", "10"), CultureInfo.InvariantCulture);
    string product = ArgOf(args, "--product", "forward"); // forward, or backward: dW, db and dX together
    using var device = ComputeDevice.Open(ComputeDevice.ParseKind(ArgOf(args, "--accelerator", "cpu")));
    device.Plan = device.Plan with { DenseOverride = Enum.Parse<DenseVariant>(ArgOf(args, "--variant", "tiled"), ignoreCase: true) };
    var rng = new Random(3);
    float[] R(int count) => Enumerable.Range(0, count).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
    var hostX = R(n * n);
    var hostW = R(n * n);
    var hostB = R(n);
    using var x = device.Upload<float>(hostX, n, n);
    using var parameters = device.Upload<float>([.. hostW, .. hostB], n * n + n);
    using var y = device.Allocate<float>(n, n);
    // Backward: dZ (n, n) random; dW = dZ^T X, db = dZ^T 1, dX = dZ W (times ReLU's derivative at X): 4 n^3 flops.
    using var dz = device.Upload<float>(R(n * n), n, n);
    using var gradients = device.Allocate<float>(n * n + n);
    using var dx = device.Allocate<float>(n, n);
    var layer = new BatchedLayerArgs // a plain layer: the batched layer at one member
    {
        X = RowSource.InPlace(x.View, n), Parameters = parameters.View, Gradients = gradients.View, Y = y.View, OutputGradient = dz.View,
        InputGradient = dx.View, Layer = ParameterLayout.PlainLayer(n, n, Activation.Identity), Rows = n, Members = 1, InputActivation = (int)Activation.Relu,
    };
    device.BatchedDenseForward(layer); // compiles and warms up
    device.Synchronize();
    var result = y.ToArray();
    double worst = 0;
    for (int s = 0; s < 64; s++)
    {
        int r = rng.Next(n), o = rng.Next(n);
        double expected = hostB[o];
        for (int i = 0; i < n; i++)
            expected += (double)hostX[r * n + i] * hostW[o * n + i];
        worst = Math.Max(worst, Math.Abs(result[r * n + o] - expected) / (1 + Math.Abs(expected)));
    }
    if (worst > 1e-3)
        throw new InvalidOperationException($"dense forward disagrees with the float64 product: relative error {worst}");
    void Launch()
    {
        if (product == "backward")
            device.BatchedDenseBackward(layer, withInputGradient: true);
        else
            device.BatchedDenseForward(layer);
    }
    Launch();
    device.Synchronize();
    var clock = System.Diagnostics.Stopwatch.StartNew();
    for (int k = 0; k < repeats; k++)
        Launch();
    device.Synchronize();
    double seconds = clock.Elapsed.TotalSeconds / repeats;
    Console.WriteLine(JsonSerializer.Serialize(new
    {
        peer = "hitgpu",
        kernel = $"dense {product}, {device.Plan.LayerVariantFor(1, n, n, n).ToString().ToLowerInvariant()} kernels",
        device = $"{device.Kind.ToString().ToLowerInvariant()} ({device.Name})",
        size = n,
        seconds,
        gflops = (product == "backward" ? 4.0 : 2.0) * n * n * n / seconds / 1e9,
        max_relative_error = worst,
    }));
    return 0;
}

// N songs drawn with replacement from the embedded 90s file, each continuous feature moved by Gaussian noise
// of 1% of its standard deviation (kept inside the file's range), the whole-number features (key, mode,
// time signature, sections) and the target as drawn; each song gets its own uri. For scale tests only:
// such a file is never committed.
static int Resample(string[] args)
{
    long rows = long.Parse(ArgOf(args, "--rows", "10000"), CultureInfo.InvariantCulture);
    string path = ArgOf(args, "--out", "songs.csv");
    int seed = int.Parse(ArgOf(args, "--seed", "0"), CultureInfo.InvariantCulture);
    var songs = SongData.LoadEmbedded90s();
    int f = SongData.FeatureCount;
    string[] whole = ["key", "mode", "time_signature", "sections"];
    var min = new float[f];
    var max = new float[f];
    var noise = new double[f];
    for (int c = 0; c < f; c++)
    {
        var column = Enumerable.Range(0, songs.Count).Select(r => (double)songs.Features[r * f + c]).ToArray();
        double mean = column.Average();
        (min[c], max[c]) = ((float)column.Min(), (float)column.Max());
        noise[c] = whole.Contains(SongData.FeatureNames[c]) ? 0 : 0.01 * Math.Sqrt(column.Average(v => (v - mean) * (v - mean)));
    }
    var rng = new Random(seed);
    using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
    using var writer = CsvHelper.CsvWriter.Create(file, SongData.WriterOptions, true);
    writer.WriteRecord(["track", "artist", "uri", .. SongData.FeatureNames, SongData.Target]);
    var record = new string[3 + f + 1];
    for (long i = 0; i < rows; i++)
    {
        int r = rng.Next(songs.Count);
        record[0] = songs.Tracks![r];
        record[1] = songs.Artists![r];
        record[2] = $"spotify:track:resampled{seed}x{i}";
        for (int c = 0; c < f; c++)
        {
            double v = songs.Features[r * f + c];
            if (noise[c] > 0)
            {
                double gaussian = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
                v = Math.Clamp(v + noise[c] * gaussian, min[c], max[c]);
            }
            record[3 + c] = ((float)v).ToString("R", CultureInfo.InvariantCulture);
        }
        record[^1] = songs.Labels![r].ToString(CultureInfo.InvariantCulture);
        writer.WriteRecord(record);
    }
    return 0;
}

// Reads a song file as training does (labels, no names) and prints the time as JSON.
static int Load(string[] args)
{
    string path = ArgOf(args, "--data", "songs.csv");
    var clock = System.Diagnostics.Stopwatch.StartNew();
    var songs = SongData.Load(path, keepNames: false);
    Console.WriteLine(JsonSerializer.Serialize(new { peer = "hitgpu", rows = songs.Count, load_seconds = clock.Elapsed.TotalSeconds }));
    return 0;
}

// Trains like `hitgpu train` after a one-epoch warm-up (kernels compiled), and prints the loop's time as JSON.
static int CompareRun(string[] args)
{
    int batch = int.Parse(ArgOf(args, "--batch-size", "32"), CultureInfo.InvariantCulture);
    int epochs = int.Parse(ArgOf(args, "--epochs", "20"), CultureInfo.InvariantCulture);
    string data = ArgOf(args, "--data", "");
    var songs = data.Length > 0 ? SongData.Load(data) : SongData.LoadEmbedded90s();
    using var device = ComputeDevice.Open(ComputeDevice.ParseKind(ArgOf(args, "--accelerator", "cpu")));
    // The same single network as the PyTorch reference, or k members of a kind (beside bench/reference/torch_tabm.py).
    var options = TrainingOptions.Study with
    {
        BatchSize = batch, Epochs = epochs,
        EnsembleSize = int.Parse(ArgOf(args, "--ensemble", "1"), CultureInfo.InvariantCulture),
        EnsembleKind = Enum.Parse<EnsembleKind>(ArgOf(args, "--ensemble-kind", "independent"), ignoreCase: true),
    };
    Trainer.Train(device, songs, options with { Epochs = 1 });
    var result = Trainer.Train(device, songs, options);
    Console.WriteLine(JsonSerializer.Serialize(new
    {
        peer = "hitgpu",
        device = $"{device.Kind.ToString().ToLowerInvariant()} ({device.Name}, {device.Accelerator.MaxNumThreadsPerGroup} threads)",
        path = result.Path.ToString(),
        batch_size = batch,
        epochs,
        members = options.EnsembleSize,
        kind = options.EnsembleKind.ToString().ToLowerInvariant(),
        loop_seconds = result.LoopSeconds,
        samples_per_second = result.TrainRows * (double)epochs / result.LoopSeconds,
        test_accuracy = result.TestAccuracy,
    }));
    return 0;
}
