// The launches whose simulated cycles bench/RESULTS.md "Simulated GPU" reports: each variant the device plan
// chooses between, at the shapes it sees. Run by bench/gpusim/cycles.sh on the simulated GPU in timing mode;
// prints "[hitgpu] case NAME" before each case's launches, so that kernels.py sums each case's cycles.
//   dotnet Cycles.dll [CASE-PREFIX] [PRODUCT-SIDE]   (the product case's M = N = K, default 256)
using HitGpu.Kernels;

string? only = args.Length > 0 && args[0] != "all" ? args[0] : null;
int side = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 256;
using var device = ComputeDevice.Open(AcceleratorKind.Cuda);
var plan = device.Plan;
var rng = new Random(1);
float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();

void Case(string name, Action run)
{
    if (only is not null && !name.StartsWith(only, StringComparison.Ordinal))
        return;
    Console.Out.WriteLine($"[hitgpu] case {name}");
    Console.Out.Flush();
    run();
    device.Accelerator.Synchronize();
}

// A variant forced on every product of a case, or null: the plan's own choice.
void Variant(DenseVariant? variant, ProductTileSize? tile, Action run)
{
    device.Plan = plan with { DenseOverride = variant, TileOverride = tile };
    try { run(); } finally { device.Plan = plan; }
}

(string Name, DenseVariant? Variant, ProductTileSize? Tile)[] variants =
    [("plan", null, null), ("simple", DenseVariant.Simple, null), ("tiled-small", DenseVariant.Tiled, ProductTileSize.Small),
     ("tiled-large", DenseVariant.Tiled, ProductTileSize.Large)];

// A dense layer's forward, or its backward (weight and bias gradients, then the input gradient), rows x in -> out;
// misaligned: the input read from one float past a 16-byte boundary (the tiled product's scalar loads).
void Layer(int rows, int inputs, int outputs, bool backward, bool misaligned)
{
    int pad = misaligned ? 1 : 0;
    using var x = device.Upload<float>(Random(rows * inputs + pad), rows * inputs + pad);
    using var parameters = device.Upload<float>(Random(outputs * inputs + outputs), outputs * inputs + outputs);
    using var y = device.Allocate<float>(rows, outputs);
    using var dz = device.Upload<float>(Random(rows * outputs), rows, outputs);
    using var gradients = device.Allocate<float>(outputs * inputs + outputs);
    using var dx = device.Allocate<float>(rows, inputs);
    var layer = new BatchedLayerArgs // a plain layer: the batched layer at one member
    {
        X = RowSource.InPlace(x.View.SubView(pad, rows * inputs), inputs), Parameters = parameters.View, Gradients = gradients.View,
        Y = y.View, OutputGradient = dz.View, InputGradient = dx.View, Layer = ParameterLayout.PlainLayer(inputs, outputs, Activation.Relu),
        Rows = rows, Members = 1, InputActivation = (int)Activation.Relu,
    };
    if (!backward)
        device.BatchedDenseForward(layer);
    else
        device.BatchedDenseBackward(layer, withInputGradient: true);
}

// 1. The study network's layers (15-64-32-1) at batch 32 and 256, forward and backward: the plan's choice and each variant.
foreach (int batch in new[] { 32, 256 })
    foreach (var (inputs, outputs) in new[] { (15, 64), (64, 32), (32, 1) })
        foreach (bool backward in new[] { false, true })
            foreach (var (name, variant, tile) in variants)
                Case($"layer {inputs}-{outputs} {(backward ? "backward" : "forward")}/batch {batch}/{name}",
                    () => Variant(variant, tile, () => Layer(batch, inputs, outputs, backward, misaligned: false)));

// 2. One product (a layer's forward, M = N = K = side): the plan's choice, each variant, the tiled ones with 16-byte and scalar loads.
foreach (var (name, variant, tile) in variants)
    foreach (bool misaligned in variant == DenseVariant.Tiled ? new[] { false, true } : new[] { false })
        Case($"product {side}/{name}{(variant == DenseVariant.Tiled ? misaligned ? "/scalar" : "/vector" : "")}",
            () => Variant(variant, tile, () => Layer(side, side, side, backward: false, misaligned)));

// 3. Training steps of the study network at batch 32: the layered path against the GPU epoch (8 steps each).
var study = ParameterLayout.ForClassifier(15, [64, 32]);
var settings = StepSettings.Default;
var schedule = Enumerable.Range(1, 8).Select(t => AdamStep.At(t, 1e-3f, settings)).ToArray();
foreach (var path in new[] { TrainingPath.Layered, TrainingPath.GpuEpoch })
    Case($"train 8 steps/batch 32/{path}", () =>
    {
        using var data = new DeviceDataset(device, Random(256 * 15), 15, Enumerable.Range(0, 256).Select(i => (float)(i % 2)).ToArray());
        using var network = new Network(device, study, 256, path, 32);
        network.Reset(study.Initialize(0));
        using var order = device.Upload<int>(Enumerable.Range(0, 256).ToArray(), 256);
        network.TrainEpoch(data, order, 32, schedule, settings, firstStep: 1);
    });

// 4. The GPU epoch with 1, 8 and 46 runs (the RTX 3070's multiprocessors) in one launch, 8 steps of 32 each.
foreach (int runs in new[] { 1, 8, 46 })
    Case($"gpu epoch/{runs} runs", () =>
    {
        int count = study.Count, positions = 256, steps = 8;
        using var x = device.Upload<float>(Random(256 * 15), 256, 15);
        using var labels = device.Upload<float>(Enumerable.Range(0, 256).Select(i => (float)(i % 2)).ToArray(), 256);
        using var shapes = device.Upload<LayerShape>(study.Shapes, study.Layers);
        using var parameters = device.Upload<float>(Enumerable.Range(0, runs).SelectMany(r => study.Initialize(r)).ToArray(), runs * count);
        using var m = device.Allocate<float>(runs * count);
        using var v = device.Allocate<float>(runs * count);
        m.Clear();
        v.Clear();
        using var order = device.Upload<int>(Enumerable.Range(0, runs).SelectMany(_ => Enumerable.Range(0, positions)).ToArray(), runs * positions);
        using var loss = device.Allocate<float>(runs * positions);
        using var correct = device.Allocate<float>(runs * positions);
        var runEntries = Enumerable.Range(0, runs).Select(r => new EpochRun { Rows = positions, FirstStep = 1, Settings = settings }).ToArray();
        using var jobs = device.Upload<EpochRun>(runEntries, runs);
        using var steps8 = device.Upload<AdamStep>(Enumerable.Range(0, runs).SelectMany(_ => schedule).ToArray(), runs * steps);
        device.TrainGpuEpoch(new GpuEpochTrainViews
        {
            Features = x.View, Labels = labels.View, Layers = shapes.View, Parameters = parameters.View, AdamM = m.View, AdamV = v.View,
            Order = order.View, SampleLoss = loss.View, SampleCorrect = correct.View, Runs = jobs.View, Schedule = steps8.View,
            RunCount = runs, Positions = positions, Steps = steps, BatchSize = 32,
        }, study);
    });
