// Each kernel at a realistic size (one batch of the default network) and a large one. Work is checked
// against the reference once in setup, then only the kernel and a synchronisation are timed.
using BenchmarkDotNet.Attributes;
using HitGpu.Kernels;

namespace HitGpu.Bench;

[Config(typeof(BenchConfig))]
public class KernelBenchmarks
{
    private ComputeDevice device = null!;
    private DeviceBuffer<float> x = null!, parameters = null!, y = null!, dy = null!, gradients = null!, dx = null!;
    private BatchedLayerArgs layer; // a plain layer: the batched layer at one member
    private int rows, inputs, outputs;

    [ParamsSource(typeof(BenchConfig), nameof(BenchConfig.Accelerators))]
    public string Accelerator { get; set; } = "cpu";

    /// <summary>rows x inputs x outputs: the default network's first layer at batch 32, its second at batch 4096, a large layer.</summary>
    [Params("32x15x64", "4096x64x32", "4096x256x256")]
    public string Shape { get; set; } = "32x15x64";


    [GlobalSetup]
    public void Setup()
    {
        device = ComputeDevice.Open(ComputeDevice.ParseKind(Accelerator));
        var dims = Shape.Split('x').Select(int.Parse).ToArray();
        (rows, inputs, outputs) = (dims[0], dims[1], dims[2]);
        var rng = new Random(1);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        var hostX = R(rows * inputs);
        var hostW = R(outputs * inputs);
        var hostB = R(outputs);
        x = device.Upload<float>(hostX, rows, inputs);
        parameters = device.Upload<float>([.. hostW, .. hostB], outputs * inputs + outputs);
        y = device.Allocate<float>(rows, outputs);
        dy = device.Upload<float>(R(rows * outputs), rows, outputs);
        gradients = device.Allocate<float>(outputs * inputs + outputs);
        dx = device.Allocate<float>(rows, inputs);
        layer = new BatchedLayerArgs
        {
            X = RowSource.InPlace(x.View, inputs), Parameters = parameters.View, Gradients = gradients.View, Y = y.View, OutputGradient = dy.View,
            InputGradient = dx.View, Layer = ParameterLayout.PlainLayer(inputs, outputs, Activation.Relu), Rows = rows, Members = 1,
            InputActivation = (int)Activation.Relu,
        };

        // Check before timing: the forward kernel's first row against the reference.
        DenseForward();
        var expected = new float[outputs];
        BatchedDense.ForwardReference<float>(layer.Layer, 1, inputShared: false,
            hostX.AsSpan(0, inputs), [.. hostW, .. hostB], expected, [], 1);
        var actual = y.ToArray().AsSpan(0, outputs);
        for (int o = 0; o < outputs; o++)
            if (Math.Abs(actual[o] - expected[o]) > 1e-4f * (1 + Math.Abs(expected[o])))
                throw new InvalidOperationException($"dense forward disagrees with its reference at output {o}: {actual[o]} vs {expected[o]}");
    }

    [Benchmark]
    public void DenseForward()
    {
        device.BatchedDenseForward(layer);
        device.Synchronize();
    }

    [Benchmark]
    public void DenseBackward()
    {
        device.BatchedDenseBackward(layer, withInputGradient: true);
        device.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var buffer in new[] { x, parameters, y, dy, gradients, dx })
            buffer.Dispose();
        device.Dispose();
    }
}

[Config(typeof(BenchConfig))]
public class AdamBenchmarks
{
    private ComputeDevice device = null!;
    private DeviceBuffer<float> p = null!, g = null!, m = null!, v = null!;

    [ParamsSource(typeof(BenchConfig), nameof(BenchConfig.Accelerators))]
    public string Accelerator { get; set; } = "cpu";

    /// <summary>Parameter count: the default network's, and a million.</summary>
    [Params(3137, 1_000_000)]
    public int Parameters { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        device = ComputeDevice.Open(ComputeDevice.ParseKind(Accelerator));
        var rng = new Random(2);
        float[] R(int n) => Enumerable.Range(0, n).Select(_ => rng.NextSingle() * 2 - 1).ToArray();
        var hostP = R(Parameters);
        var hostG = R(Parameters);
        p = device.Upload<float>(hostP, Parameters);
        g = device.Upload<float>(hostG, Parameters);
        m = device.Allocate<float>(Parameters);
        v = device.Allocate<float>(Parameters);
        m.Clear();
        v.Clear();
        // Check before timing: one step against the reference.
        var expected = (float[])hostP.Clone();
        Adam.UpdateReference(expected, hostG, new float[Parameters], new float[Parameters], AdamStep.At(1, 1e-3f));
        AdamUpdate();
        var actual = p.ToArray();
        for (int i = 0; i < Parameters; i += 997)
            if (Math.Abs(actual[i] - expected[i]) > 1e-6f)
                throw new InvalidOperationException($"Adam disagrees with its reference at {i}: {actual[i]} vs {expected[i]}");
    }

    [Benchmark]
    public void AdamUpdate()
    {
        device.AdamUpdate(p.View, g.View, m.View, v.View, AdamStep.At(1, 1e-3f));
        device.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var buffer in new[] { p, g, m, v })
            buffer.Dispose();
        device.Dispose();
    }
}
