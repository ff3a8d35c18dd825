// A plain layer (the batched layer at one member, no adapters) forward and backward, every variant (one output
// per thread; the tiled product with its small and its large tile), against the one layer reference, on
// random values and odd shapes (none a multiple of a tile; some that take the 16-byte vector loads, some the
// guarded scalar ones), read in place and gathered through a shuffled index. The tiled kernels need groups of
// 64 and 256 threads, which the CPU accelerator's default device does not have: they run on CPU devices
// opened with that many (TiledDevices), or on the tests' GPU.
namespace HitGpu.Kernels.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class DenseTests(AcceleratorFixture fixture)
{
    public static TheoryData<int, int, int, Activation, bool, DenseKernels> Shapes()
    {
        var data = new TheoryData<int, int, int, Activation, bool, DenseKernels>();
        // [96, 64, 64] and [136, 72, 80] take the vector loads in every product (rows, inputs and outputs
        // multiples of 8), the rest the scalar ones somewhere; [257, 33, 17] is a batched ensemble's layer. On the
        // simulated GPU 300 rows stand for 1000 (its weight gradient's split sum took a minute there).
        int many = AcceleratorFixture.Simulated ? 300 : 1000;
        int[][] shapes = [[1, 1, 1], [7, 15, 64], [63, 64, 32], [65, 32, 1], [many, 15, 7], [33, 3, 65], [96, 64, 64], [257, 33, 17], [136, 72, 80]];
        foreach (var kernels in Enum.GetValues<DenseKernels>().Where(k => k != DenseKernels.Lanes)) // lanes: BatchedDenseTests, at one member too
            foreach (var s in shapes)
                foreach (var activation in Enum.GetValues<Activation>().Where(Activations.SlopeFromOutput)) // a cosine: BatchedDenseTests
                    foreach (bool gathered in new[] { false, true })
                        // The large tile's 256 threads are slow on the CPU accelerator: two activations are enough there.
                        if (kernels != DenseKernels.TiledLarge || activation is Activation.Relu or Activation.Sigmoid)
                            data.Add(s[0], s[1], s[2], activation, gathered, kernels);
        return data;
    }

    /// <summary>Runs <paramref name="launch"/> on a device that has the kernels, with them forced, then lets it choose again.</summary>
    private void With(DenseKernels kernels, Action<ComputeDevice> launch) => TiledDevices.With(fixture.Device, kernels, launch);

    /// <summary>A plain layer as the batched layer takes it: one member, no adapters, W (out, in) then b in one flat array.</summary>
    private static (LayerShape Layer, float[] Parameters) AsLayer(float[] weight, float[] bias, int inputs, int outputs, Activation activation) =>
        (ParameterLayout.PlainLayer(inputs, outputs, activation), [.. weight, .. bias]);

    /// <summary>A source matrix with spare rows, the rows the batch reads, and (gathered) a shuffled index to them.</summary>
    private static (float[] source, int[] index, float[] batch) MakeInput(Random rng, int rows, int inputs, bool gathered, Activation producedBy)
    {
        int sourceRows = rows + 5;
        var source = Tolerance.Random(rng, sourceRows * inputs, 2f);
        if (producedBy == Activation.Relu)
            for (int i = 0; i < source.Length; i++) source[i] = Math.Max(0f, source[i]);
        if (producedBy == Activation.Sigmoid)
            for (int i = 0; i < source.Length; i++) source[i] = Activations.Sigmoid(source[i]);
        var index = Enumerable.Range(0, sourceRows).OrderBy(_ => rng.Next()).ToArray();
        var batch = new float[rows * inputs];
        for (int r = 0; r < rows; r++)
        {
            int row = gathered ? index[3 + r] : 3 + r; // offset 3 checks that the offset is honoured
            Array.Copy(source, row * inputs, batch, r * inputs, inputs);
        }
        return (source, index, batch);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Forward_matches_reference(int rows, int inputs, int outputs, Activation activation, bool gathered, DenseKernels variant)
    {
        var rng = new Random(rows * 7919 + inputs * 31 + outputs);
        var (source, index, batch) = MakeInput(rng, rows, inputs, gathered, Activation.Identity);
        var weight = Tolerance.Random(rng, outputs * inputs);
        var bias = Tolerance.Random(rng, outputs);
        var expected = new float[rows * outputs];
        var (layer, parameters) = AsLayer(weight, bias, inputs, outputs, activation);
        BatchedDense.ForwardReference<float>(layer, 1, inputShared: false, batch, parameters, expected, [], rows);

        float[] actual = [];
        With(variant, device =>
        {
            using var x = device.Upload<float>(source, source.Length / inputs, inputs);
            using var idx = device.Upload<int>(index, index.Length);
            using var p = device.Upload<float>(parameters, parameters.Length);
            using var y = device.Allocate<float>(rows, outputs);
            device.BatchedDenseForward(new BatchedLayerArgs
            {
                X = gathered ? RowSource.Gather(x.View, inputs, idx.View, 3) : RowSource.InPlace(x.View, inputs, 3),
                Parameters = p.View, Y = y.View, Layer = layer, Rows = rows, Members = 1, InputShared = gathered ? 1 : 0,
            });
            actual = y.ToArray();
        });
        // Float rounding in proportion to the terms summed, as in the backward test: the CUDA compiler fuses
        // multiply-adds (one rounding each), the C# reference rounds twice, so the last bits differ
        // (seen on an H200: 1.4e-6 on a 64-term sum of 0.024).
        Tolerance.AllClose(expected, actual, $"y ({rows}x{inputs}->{outputs}, {activation}, gathered={gathered}, {variant})", abs: 1e-6 * (inputs + 1));
        if (activation == Activation.Relu && expected.Length >= 16)
            Assert.Contains(expected, v => v > 0f); // the test is not passing on all-zero outputs
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Backward_matches_reference(int rows, int inputs, int outputs, Activation inputActivation, bool gathered, DenseKernels variant)
    {
        var rng = new Random(rows * 104729 + inputs * 17 + outputs);
        var (source, index, batch) = MakeInput(rng, rows, inputs, gathered, inputActivation);
        var weight = Tolerance.Random(rng, outputs * inputs);
        var outputGradient = Tolerance.Random(rng, rows * outputs);
        var expectedX = new float[rows * inputs];
        var (layer, parameters) = AsLayer(weight, new float[outputs], inputs, outputs, Activation.Identity);
        var gradient = new float[parameters.Length];
        BatchedDense.BackwardReference<float>(layer, 1, inputShared: false, batch, parameters, [], outputGradient, gradient, expectedX, rows, inputActivation);
        var expectedW = gradient[..(outputs * inputs)];
        var expectedB = gradient[(outputs * inputs)..];

        float[] actualW = [], actualB = [], actualX = [];
        With(variant, device =>
        {
            using var x = device.Upload<float>(source, source.Length / inputs, inputs);
            using var idx = device.Upload<int>(index, index.Length);
            using var p = device.Upload<float>(parameters, parameters.Length);
            using var dz = device.Upload<float>(outputGradient, rows, outputs);
            using var dp = device.Allocate<float>(parameters.Length);
            using var g = device.Allocate<float>(rows, inputs);
            using var dx = device.Allocate<float>(rows, inputs);
            // Gathered rows are a network's first layer's (InputShared): dx then goes through the stored g.
            device.BatchedDenseBackward(new BatchedLayerArgs
            {
                X = gathered ? RowSource.Gather(x.View, inputs, idx.View, 3) : RowSource.InPlace(x.View, inputs, 3),
                Parameters = p.View, Gradients = dp.View, OutputGradient = dz.View, ScaledInputGradient = g.View, InputGradient = dx.View,
                Layer = layer, Rows = rows, Members = 1, InputShared = gathered ? 1 : 0, InputActivation = (int)inputActivation,
            }, withInputGradient: true);
            var dParameters = dp.ToArray();
            (actualW, actualB, actualX) = (dParameters[..(outputs * inputs)], dParameters[(outputs * inputs)..], dx.ToArray());
        });
        string what = $"({rows}x{inputs}->{outputs}, {inputActivation}, gathered={gathered}, {variant})";
        // Sums over up to 1000 rows: allow float rounding in proportion to the terms' size.
        double abs = 1e-6 * Math.Max(rows, outputs);
        Tolerance.AllClose(expectedW, actualW, "dW " + what, abs);
        Tolerance.AllClose(expectedB, actualB, "db " + what, abs);
        Tolerance.AllClose(expectedX, actualX, "dx " + what, abs);
    }

    [Fact]
    public void Forward_rejects_parameters_too_short_for_the_layer()
    {
        var device = fixture.Device;
        using var x = device.Allocate<float>(4, 3);
        using var p = device.Allocate<float>(3 * 2 + 1); // W (2, 3) and one of b's two
        using var y = device.Allocate<float>(4, 2);
        var error = Assert.Throws<ArgumentException>(() => device.BatchedDenseForward(new BatchedLayerArgs
        {
            X = RowSource.InPlace(x.View, 3), Parameters = p.View, Y = y.View, Layer = ParameterLayout.PlainLayer(3, 2, Activation.Relu), Rows = 4, Members = 1,
        }));
        Assert.Contains("outside the parameters", error.Message);
    }

    [Theory]
    [InlineData(65, 33, 17, DenseKernels.TiledSmall)]  // scalar loads, partial tiles
    [InlineData(64, 32, 16, DenseKernels.TiledSmall)]  // 16-byte loads in every layout
    [InlineData(65, 33, 17, DenseKernels.TiledLarge)]
    [InlineData(64, 32, 16, DenseKernels.TiledLarge)]
    public void The_product_of_every_operand_layout_matches_the_reference(int m, int n, int k, DenseKernels kernels)
    {
        // C = relu(A B + bias) with A stored (m, k) or (k, m) and B (k, n) or (n, k): the layers ask for three of
        // the four layouts, the fourth (A with k across its rows, B along) is an instance the catalog has too.
        var rng = new Random(m * 131 + n * 17 + k);
        var a = Tolerance.Random(rng, m * k);
        var b = Tolerance.Random(rng, k * n);
        var bias = Tolerance.Random(rng, n);
        foreach (bool aKAlongRows in new[] { true, false })
            foreach (bool bKAlongRows in new[] { true, false })
            {
                double A(int i, int r) => aKAlongRows ? a[i * k + r] : a[r * m + i];
                double B(int r, int j) => bKAlongRows ? b[j * k + r] : b[r * n + j];
                With(kernels, device =>
                {
                    using var da = device.Upload<float>(a, aKAlongRows ? m : k, aKAlongRows ? k : m);
                    using var db = device.Upload<float>(b, bKAlongRows ? n : k, bKAlongRows ? k : n);
                    using var dbias = device.Upload<float>(bias, n);
                    using var c = device.Allocate<float>(m, n);
                    device.TiledProduct(new ProductArgs
                    {
                        A = ProductOperand.Of(RowSource.InPlace(da.View, aKAlongRows ? k : m)),
                        B = ProductOperand.Of(RowSource.InPlace(db.View, bKAlongRows ? k : n)),
                        C = c.View, Bias = dbias.View, M = m, N = n, K = k, HasBias = 1, Activation = (int)Activation.Relu,
                    }, aKAlongRows, bKAlongRows);
                    var actual = c.ToArray();
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++)
                        {
                            double sum = bias[j];
                            for (int r = 0; r < k; r++)
                                sum += A(i, r) * B(r, j);
                            string layout = $"A k {(aKAlongRows ? "along" : "across")} rows, B k {(bKAlongRows ? "along" : "across")}";
                            Tolerance.Close(Math.Max(0, sum), actual[i * n + j], $"C[{i}, {j}] ({layout}, {kernels})", abs: 1e-5, rel: 1e-5);
                        }
                });
            }
    }

    /// <summary>Products whose sum is cut into ranges: on the simulated GPU with fewer ranges (6 and 4, not 17 and 8).</summary>
    public static TheoryData<int, int, int> SplitShapes() => new()
    {
        { 64, 15, AcceleratorFixture.Simulated ? 1536 : 4096 }, // the default network's first weight gradient at batch 4096: 17 ranges
        { 3, 5, 1000 },                                         // a range that ends inside a Depth slice
        { 1, 1, 777 },
        { 16, 16, AcceleratorFixture.Simulated ? 1024 : 2048 }, // 16-byte loads
    };

    [Theory]
    [MemberData(nameof(SplitShapes))]
    public void Split_K_sums_the_ranges_in_order_to_the_reference(int m, int n, int k)
    {
        // Both tiles; n = 16 takes the vector loads (k a multiple of 8 in the first case).
        // C = A^T B with the sum over k cut into ranges (as for a weight gradient over a large batch).
        Assert.True(DevicePlan.SplitsFor(m * n, k) > 1, "the case must split");
        var rng = new Random(m * 31 + n * 7 + k);
        var a = Tolerance.Random(rng, k * m);   // (k, m): read transposed
        var b = Tolerance.Random(rng, k * n);   // (k, n)
        var bias = Tolerance.Random(rng, n);
        var expected = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int r = 0; r < k; r++)
                    sum += (double)a[r * m + i] * b[r * n + j];
                expected[i * n + j] = Math.Max(0, sum + bias[j]);
            }
        foreach (var kernels in new[] { DenseKernels.TiledSmall, DenseKernels.TiledLarge })
            With(kernels, device =>
            {
                using var da = device.Upload<float>(a, k, m);
                using var db = device.Upload<float>(b, k, n);
                using var dbias = device.Upload<float>(bias, n);
                using var c = device.Allocate<float>(m, n);
                var args = new ProductArgs
                {
                    A = ProductOperand.Of(RowSource.InPlace(da.View, m)), B = ProductOperand.Of(RowSource.InPlace(db.View, n)),
                    C = c.View, Bias = dbias.View, M = m, N = n, K = k, HasBias = 1, Activation = (int)Activation.Relu,
                };
                device.TiledProduct(args, aKAlongRows: false, bKAlongRows: false);
                var first = c.ToArray();
                for (int i = 0; i < m * n; i++)
                    Tolerance.Close(expected[i], first[i], $"C[{i}] ({m}x{n}, k {k}, {kernels})", abs: 1e-6 * k, rel: 1e-5);
                device.TiledProduct(args, aKAlongRows: false, bKAlongRows: false);
                Assert.Equal(first, c.ToArray()); // a fixed order of sums: the same bits
            });
    }
}
