// The batched-ensemble layer's kernels (forward; parameter, input-scale and input gradients) against
// BatchedDense's reference, for every kind's first, hidden and head layer, on random values: layer 0 reading
// shared input rows in place or gathered, later layers one row per row-member; with the simple kernels, as
// the tiled products a GPU runs (both tiles: TiledDevices) and as the lanes kernels it runs for grouped layers
// (which give the simple kernels' bits).
namespace HitGpu.Kernels.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class BatchedDenseTests(AcceleratorFixture fixture)
{
    public static TheoryData<EnsembleKind, int, int, int, bool, DenseKernels> Cases()
    {
        var data = new TheoryData<EnsembleKind, int, int, int, bool, DenseKernels>();
        foreach (var kernels in Enum.GetValues<DenseKernels>())
            foreach (var kind in Enum.GetValues<EnsembleKind>())
                foreach (int members in new[] { 2, 5 })
                    foreach (int layer in new[] { 0, 1, 2 })
                    {
                        if (kernels == DenseKernels.TiledLarge && members == 5)
                            continue; // 256 simulated threads: the 2-member cases are enough there
                        data.Add(kind, members, layer, 13, false, kernels);
                        if (layer == 0)
                            data.Add(kind, members, layer, 6, true, kernels);
                    }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Forward_and_backward_match_the_reference(EnsembleKind kind, int members, int l, int rows, bool gathered, DenseKernels kernels) =>
        MatchesTheReference(ParameterLayout.ForClassifier(11, [9, 5], kind, members), l, rows, gathered, kernels);

    [Theory]
    [InlineData(EnsembleKind.Independent, DenseKernels.TiledSmall)]
    [InlineData(EnsembleKind.Independent, DenseKernels.TiledLarge)]
    [InlineData(EnsembleKind.Batch, DenseKernels.TiledSmall)]
    [InlineData(EnsembleKind.Mini, DenseKernels.TiledSmall)]
    [InlineData(EnsembleKind.Batch, DenseKernels.Simple)]
    [InlineData(EnsembleKind.Mini, DenseKernels.Simple)]
    public void Widths_in_multiples_of_8_take_the_vector_loads_and_match_the_reference(EnsembleKind kind, DenseKernels kernels)
    {
        // 16 inputs, 24 and 16 hidden, 24 rows: every sum a whole number of slices, every row 16-byte aligned
        // (the products' and the reductions' 16-byte loads; the simple kernels run the reductions too).
        var layout = ParameterLayout.ForClassifier(16, [24, 16], kind, 3);
        for (int l = 0; l < 2; l++)
            MatchesTheReference(layout, l, 24, gathered: false, kernels);
        MatchesTheReference(layout, 0, 24, gathered: true, kernels);
    }

    [Theory]
    [InlineData(EnsembleKind.Batch, DenseKernels.Simple)]
    [InlineData(EnsembleKind.Batch, DenseKernels.TiledSmall)]
    [InlineData(EnsembleKind.Mini, DenseKernels.Simple)]
    [InlineData(EnsembleKind.Mini, DenseKernels.TiledSmall)]
    public void Layers_narrower_than_four_columns_match_the_reference(EnsembleKind kind, DenseKernels kernels)
    {
        // 3 inputs, 2 and 3 hidden: the reductions' one window a row, its loads clamped.
        var layout = ParameterLayout.ForClassifier(3, [2, 3], kind, 3);
        for (int l = 0; l < 3; l++)
            MatchesTheReference(layout, l, 9, gathered: l == 0, kernels);
    }

    /// <summary>Cases of the embedding layouts: each (kind, members, layer) with the simple kernels (the CPU's), the products or lanes a GPU runs.</summary>
    private static TheoryData<EnsembleKind, int, int, DenseKernels> EmbeddingCases((EnsembleKind, int, int)[] cases)
    {
        var data = new TheoryData<EnsembleKind, int, int, DenseKernels>();
        foreach (var (kind, members, l) in cases)
            foreach (var kernels in new[] { DenseKernels.Simple, DenseKernels.TiledSmall, DenseKernels.Lanes })
                data.Add(kind, members, l, kernels);
        return data;
    }

    public static TheoryData<EnsembleKind, int, int, DenseKernels> GroupedCases()
        => EmbeddingCases([(EnsembleKind.Independent, 1, 0), (EnsembleKind.Independent, 1, 1),
        (EnsembleKind.Independent, 3, 0), (EnsembleKind.Batch, 3, 0), (EnsembleKind.Batch, 3, 1), (EnsembleKind.Mini, 2, 1)]);

    public static TheoryData<EnsembleKind, int, int, DenseKernels> PeriodicCases()
        => EmbeddingCases([(EnsembleKind.Independent, 1, 0), (EnsembleKind.Independent, 1, 1),
        (EnsembleKind.Batch, 3, 1), (EnsembleKind.Mini, 2, 2)]);

    [Theory]
    [MemberData(nameof(GroupedCases))]
    public void A_grouped_embedding_layer_and_the_layer_after_it_match_the_reference(EnsembleKind kind, int members, int l, DenseKernels kernels) =>
        // 3 features of 4 inputs each to 2 dimensions each: output o reads its feature's 4 inputs only.
        MatchesTheReference(ParameterLayout.WithEmbedding(3, 4, 2, [5], kind, members), l, 9, gathered: l == 0, kernels);

    [Theory]
    [MemberData(nameof(PeriodicCases))]
    public void A_periodic_embedding_and_the_layers_after_it_match_the_reference(EnsembleKind kind, int members, int l, DenseKernels kernels) =>
        // Layer 0 keeps its cosines' pre-activations; layer 1's input gradient takes -sin of them.
        MatchesTheReference(ParameterLayout.WithPeriodicEmbedding(3, 2, 2, [5], kind, members), l, 9, gathered: l == 0, kernels);

    [Theory]
    [InlineData(EnsembleKind.Independent, 3, 0, 13)] // per-member W, shared input rows gathered, 13 row-members' lanes end mid-item
    [InlineData(EnsembleKind.Batch, 3, 0, 9)]        // r and s, shared W
    [InlineData(EnsembleKind.Batch, 4, 1, 7)]
    [InlineData(EnsembleKind.Mini, 2, 1, 5)]
    public void The_lanes_kernels_give_the_simple_kernels_bits(EnsembleKind kind, int members, int l, int rows)
    {
        // Every output summed with the same terms in the same order, four a work item: on the CPU accelerator
        // the same bits, for a grouped embedding (per-feature inputs of 7, to 5 each) and for a dense layer;
        // the weight gradient too where each member owns its W and has no adapters (elsewhere the lanes sum it
        // member by member, their r and s once a member: the reference tests hold that one).
        foreach (var layout in new[] { ParameterLayout.WithEmbedding(3, 7, 5, [6], kind, members), ParameterLayout.ForClassifier(11, [9, 6], kind, members) })
        {
            var layer = layout[l];
            var simple = Outputs(layout, l, rows, DenseKernels.Simple);
            var lanes = Outputs(layout, l, rows, DenseKernels.Lanes);
            Assert.Contains(simple, v => v != 0f);
            bool sameWeightOrder = (layer.WeightStride > 0 || members == 1) && !layer.HasInputScale && !layer.HasOutputScale;
            int weights = (layer.WeightStride > 0 ? members : 1) * layer.Outputs * layer.InputsPerGroup;
            for (int i = 0; i < simple.Length; i++)
                if (sameWeightOrder || !WeightGradient(layout, l, rows, i, weights))
                    Assert.True(simple[i] == lanes[i], $"value {i} of {simple.Length}: {simple[i]} (simple) against {lanes[i]} (lanes)");
        }
    }

    /// <summary>Whether value i of <see cref="Outputs"/> is one of the layer's weight gradients.</summary>
    private static bool WeightGradient(ParameterLayout layout, int l, int rows, int i, int weights)
    {
        int forward = 2 * rows * layout.Members * layout[l].Outputs; // y, then the pre-scale sums
        return i >= forward + layout[l].WeightOffset && i < forward + layout[l].WeightOffset + weights;
    }

    /// <summary>The layer's forward outputs, pre-scale sums, parameter gradients and input gradient with the kernels given, on random values of a
    /// seed.</summary>
    private float[] Outputs(ParameterLayout layout, int l, int rows, DenseKernels kernels)
    {
        float[] result = [];
        TiledDevices.With(fixture.Device, kernels, device =>
        {
            var layer = layout[l];
            int members = layout.Members, inputRows = l == 0 ? rows : rows * members, rowMembers = rows * members;
            var rng = new Random(rows * 7 + l);
            var x = Tolerance.Random(rng, inputRows * layer.Inputs, 2f).Select(v => Math.Max(0f, v)).ToArray();
            using var xOnDevice = device.Upload<float>(x, inputRows, layer.Inputs);
            using var index = device.Upload<int>(Enumerable.Range(0, inputRows).Reverse().ToArray(), inputRows);
            using var p = device.Upload<float>(Tolerance.Random(rng, layout.Count, 0.7f), layout.Count);
            using var g = device.Allocate<float>(layout.Count);
            using var pre = device.Allocate<float>(rowMembers, layer.Outputs);
            using var y = device.Allocate<float>(rowMembers, layer.Outputs);
            using var dz = device.Upload<float>(Tolerance.Random(rng, rowMembers * layer.Outputs, 1f), rowMembers, layer.Outputs);
            using var scaled = device.Allocate<float>(rowMembers, layer.Inputs);
            using var dx = device.Allocate<float>(inputRows, layer.Inputs);
            using var z = device.Allocate<float>(rowMembers, layer.Outputs);
            foreach (var buffer in new[] { g, pre, y, scaled, dx, z })
                buffer.Clear(); // what a path leaves unwritten compares as zero
            var args = new BatchedLayerArgs
            {
                X = l == 0 ? RowSource.Gather(xOnDevice.View, layer.Inputs, index.View, 0) : RowSource.InPlace(xOnDevice.View, layer.Inputs),
                Parameters = p.View, Gradients = g.View, PreScale = pre.View, Y = y.View, OutputGradient = dz.View, ScaledInputGradient = scaled.View,
                InputGradient = dx.View, PreActivation = z.View, Layer = layer, Rows = rows, Members = members, InputShared = l == 0 ? 1 : 0,
                InputActivation = (int)layout.InputActivationOf(l),
            };
            device.BatchedDenseForward(args);
            device.BatchedDenseBackward(args, withInputGradient: true);
            result = [.. y.ToArray(), .. pre.ToArray(), .. g.ToArray(), .. dx.ToArray(), .. scaled.ToArray()];
        });
        return result;
    }

    private void MatchesTheReference(ParameterLayout layout, int l, int rows, bool gathered, DenseKernels kernels) =>
        TiledDevices.With(fixture.Device, kernels, device => MatchesTheReferenceOn(device, layout, l, rows, gathered));

    private static void MatchesTheReferenceOn(ComputeDevice device, ParameterLayout layout, int l, int rows, bool gathered)
    {
        int members = layout.Members;
        var layer = layout[l];
        var rng = new Random(members * 100 + l * 10 + rows + layout.Count);
        var parameters = Tolerance.Random(rng, layout.Count, 0.7f);
        bool shared = l == 0;
        int inputRows = shared ? rows : rows * members, spare = 4;
        var source = Tolerance.Random(rng, (inputRows + spare) * layer.Inputs, 2f);
        var inputActivation = layout.InputActivationOf(l);
        if (inputActivation == Activation.Relu)
            for (int i = 0; i < source.Length; i++) source[i] = Math.Max(0f, source[i]);
        // After a cosine layer the input is cos z, with its z kept beside it (never gathered: only layer 0 is).
        var inputPre = inputActivation == Activation.Cos ? Tolerance.Random(rng, source.Length, 3f) : [];
        if (inputActivation == Activation.Cos)
            for (int i = 0; i < source.Length; i++) source[i] = MathF.Cos(inputPre[i]);
        var index = Enumerable.Range(0, inputRows + spare).OrderBy(_ => rng.Next()).ToArray();
        var x = new float[inputRows * layer.Inputs];
        for (int r = 0; r < inputRows; r++)
            Array.Copy(source, (gathered ? index[2 + r] : 2 + r) * layer.Inputs, x, r * layer.Inputs, layer.Inputs);
        int rowMembers = rows * members;
        var outputGradient = Tolerance.Random(rng, rowMembers * layer.Outputs, 1f);

        var y = new float[rowMembers * layer.Outputs];
        var preScale = new float[rowMembers * layer.Outputs];
        var preActivation = new float[rowMembers * layer.Outputs];
        BatchedDense.ForwardReference<float>(layer, members, shared, x, parameters, y, preScale, rows, preActivation);
        var gradient = new float[layout.Count];
        var inputGradient = new float[inputRows * layer.Inputs];
        var xPre = inputPre.Length > 0 ? inputPre.AsSpan(2 * layer.Inputs, inputRows * layer.Inputs).ToArray() : [];
        BatchedDense.BackwardReference<float>(layer, members, shared, x, parameters, preScale, outputGradient, gradient, inputGradient, rows,
            inputActivation, xPre);
        Assert.Contains(inputGradient, g => Math.Abs(g) > 1e-3);

        using var sourceOnDevice = device.Upload<float>(source, inputRows + spare, layer.Inputs);
        using var indexOnDevice = device.Upload<int>(index, index.Length);
        using var p = device.Upload<float>(parameters, layout.Count);
        using var g = device.Allocate<float>(layout.Count);
        using var pre = device.Allocate<float>(rowMembers, layer.Outputs);
        using var yOnDevice = device.Allocate<float>(rowMembers, layer.Outputs);
        using var dz = device.Upload<float>(outputGradient, rowMembers, layer.Outputs);
        using var scaledGradient = device.Allocate<float>(rowMembers, layer.Inputs);
        using var dx = device.Allocate<float>(inputRows, layer.Inputs);
        using var z = device.Allocate<float>(rowMembers, layer.Outputs);
        using var xPreOnDevice = device.Upload<float>(xPre.Length > 0 ? xPre : new float[1], Math.Max(1, xPre.Length));
        g.Clear();
        var args = new BatchedLayerArgs
        {
            X = gathered ? RowSource.Gather(sourceOnDevice.View, layer.Inputs, indexOnDevice.View, 2) : RowSource.InPlace(sourceOnDevice.View, layer.Inputs, 2),
            Parameters = p.View, Gradients = g.View, PreScale = pre.View, Y = yOnDevice.View, OutputGradient = dz.View,
            ScaledInputGradient = scaledGradient.View, InputGradient = dx.View, PreActivation = z.View, InputPreActivation = xPreOnDevice.View,
            Layer = layer, Rows = rows, Members = members, InputShared = shared ? 1 : 0, InputActivation = (int)inputActivation,
        };
        device.BatchedDenseForward(args);
        Tolerance.AllClose(y, yOnDevice.ToArray(), "y", abs: 1e-5, rel: 1e-5);
        if (layer.HasOutputScale)
            Tolerance.AllClose(preScale, pre.ToArray(), "pre-scale sums", abs: 1e-5, rel: 1e-5);
        if (layer.KeepsPreActivation)
            Tolerance.AllClose(preActivation, z.ToArray(), "pre-activations", abs: 1e-5, rel: 1e-5);

        device.BatchedDenseBackward(args, withInputGradient: true);
        // Only this layer's tensors are written; the reference leaves the others at 0 too.
        Tolerance.AllClose(gradient, g.ToArray(), "parameter gradients", abs: 1e-5, rel: 1e-4);
        Tolerance.AllClose(inputGradient, dx.ToArray(), "input gradient", abs: 1e-5, rel: 1e-4);
        foreach (var t in layout.Tensors(l))
            Assert.Contains(gradient.AsSpan(t.Offset, t.Length).ToArray(), v => Math.Abs(v) > 1e-4); // every tensor gets a gradient
        if (layer.Groups > 1)
        {
            // Output 0 reads the first feature's inputs only: moving another feature's input leaves it alone.
            var moved = (float[])x.Clone();
            for (int r = 0; r < inputRows; r++)
                moved[r * layer.Inputs + layer.InputsPerGroup] += 1f;
            var y2 = new float[y.Length];
            BatchedDense.ForwardReference<float>(layer, members, shared, moved, parameters, y2, new float[y.Length], rows, new float[y.Length]);
            for (int rm = 0; rm < rowMembers; rm++)
                Assert.Equal(y[rm * layer.Outputs], y2[rm * layer.Outputs]);
            Assert.NotEqual(y, y2);
        }
    }
}
