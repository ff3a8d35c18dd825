// The batched layer's launchers: the variant the plan picks, the sizes checked on the host before each launch,
// and on a GPU the layer as tiled products (DenseTiled.cs).
using ILGPU;

namespace HitGpu.Kernels;

public sealed partial class ComputeDevice
{
    private Action<KernelConfig, BatchedLayerArgs, int>? batchedForward, batchedParameterGradient, batchedScaledInputGradient;
    private Action<KernelConfig, BatchedLayerArgs, int>? lanesForward, lanesParameterGradient, lanesScaledInputGradient;
    private readonly Dictionary<(string, bool), Action<KernelConfig, BatchedLayerArgs, int>> batchedReductions = [];

    /// <summary>
    /// One of the three reductions (a kernel of BatchedDense by name) over <paramref name="rows"/> rows of
    /// <paramref name="cols"/> columns, eight a work item; 16-byte loads where the columns and every operand it
    /// reads allow them.
    /// </summary>
    private void BatchedReduction(string kernel, in BatchedLayerArgs a, int rows, int cols, ArrayView<float> first, ArrayView<float> second,
        int secondOffset = 0)
    {
        bool vector = cols % 4 == 0 && cols >= ColumnWindow.Width && IsVectorAligned(first) && IsVectorAligned(second) && secondOffset % 4 == 0;
        if (!batchedReductions.TryGetValue((kernel, vector), out var launch))
            batchedReductions[(kernel, vector)] = launch = LoadKernel<BatchedLayerArgs, int>(
                BatchedDense.ReductionKernelFor(kernel, vector).CreateDelegate<Action<BatchedLayerArgs, int>>());
        var shape = Plan.ShapeFor(rows * ColumnWindow.Count(cols));
        launch(shape.Config, a, shape.BlockedFlag);
    }

    private void InputScaleGradient(in BatchedLayerArgs a) =>
        BatchedReduction(nameof(BatchedDense.InputScaleGradientKernel), a, a.InputShared != 0 ? (a.Members + 3) / 4 : a.Members, a.Layer.Inputs,
            a.ScaledInputGradient, a.X.Data);

    private void OutputScaleGradient(in BatchedLayerArgs a) =>
        BatchedReduction(nameof(BatchedDense.OutputScaleGradientKernel), a, a.Members, a.Layer.Outputs, a.OutputGradient, a.PreScale);

    private void BatchedInputGradient(in BatchedLayerArgs a) =>
        BatchedReduction(nameof(BatchedDense.InputGradientKernel), a, (a.InputShared != 0 ? 1 : a.Members) * a.Rows, a.Layer.Inputs,
            a.ScaledInputGradient, a.Parameters, a.Layer.HasInputScale ? a.Layer.InputScaleOffset : 0);

    // ---- the layer as tiled products (a GPU's; DenseTiled.cs) ----

    /// <summary>The layer's parameters from <paramref name="offset"/> on, as rows of <paramref name="cols"/>.</summary>
    private static RowSource ParameterRows(in BatchedLayerArgs a, int offset, int cols) => RowSource.InPlace(a.Parameters.SubView(offset), cols);

    /// <summary>
    /// The products' common frame: members and slabs (one per member where the weights are the member's own,
    /// their rows b k + i; else one slab over all row-members, member rm mod k).
    /// </summary>
    private static ProductArgs BatchedProduct(in BatchedLayerArgs a, bool perMember) => new()
    {
        Members = a.Members, Slabs = perMember ? a.Members : 1,
    };

    /// <summary>The layer's input as an operand: row-members, or layer 0's input rows shared by them; times r where the layer has it.</summary>
    private static ProductOperand BatchedInput(in BatchedLayerArgs a) => new()
    {
        Rows = a.X, RowMembers = a.InputShared != 0 ? 2 : 1,
        ScaleStride = a.Layer.HasInputScale ? a.Layer.Inputs : 0,
        Scales = a.Layer.HasInputScale ? a.Parameters.SubView(a.Layer.InputScaleOffset) : default,
    };

    /// <summary>dL/dz as an operand, its rows row-members (or all rows, <paramref name="rowMembers"/> false); times s where the layer has it and
    /// <paramref name="scaled"/>.</summary>
    private static ProductOperand BatchedOutputGradient(in BatchedLayerArgs a, bool rowMembers, bool scaled) => new()
    {
        Rows = RowSource.InPlace(a.OutputGradient, a.Layer.Outputs), RowMembers = rowMembers ? 1 : 0,
        ScaleStride = scaled && a.Layer.HasOutputScale ? a.Layer.Outputs : 0,
        Scales = scaled && a.Layer.HasOutputScale ? a.Parameters.SubView(a.Layer.OutputScaleOffset) : default,
    };


    /// <summary>Y = f(((X r) W^T) s + b): one product over the row-members (shared W) or one per member (its own W), r as the input is loaded, s, b and f
    /// in the epilogue.</summary>
    private void BatchedForwardProducts(in BatchedLayerArgs a)
    {
        var layer = a.Layer;
        var p = BatchedProduct(a, layer.WeightStride > 0);
        p.A = BatchedInput(a);
        p.B = new ProductOperand { Rows = ParameterRows(a, layer.WeightOffset, layer.Inputs), SlabStride = layer.WeightStride };
        p.M = p.Slabs > 1 ? a.Rows : a.Rows * a.Members;
        p.N = layer.Outputs;
        p.K = layer.Inputs;
        p.C = a.Y;
        p.CRowMembers = 1;
        p.HasBias = 1;
        p.Bias = a.Parameters.SubView(layer.BiasOffset);
        p.BiasStride = layer.BiasStride;
        if (layer.HasOutputScale)
        {
            p.HasOutputScale = 1;
            p.OutputScale = a.Parameters.SubView(layer.OutputScaleOffset);
            p.OutputScaleStride = layer.Outputs;
            p.PreScale = a.PreScale;
        }
        p.KeepsPreActivation = layer.KeepsPreActivation ? 1 : 0;
        p.PreActivation = a.PreActivation;
        p.Activation = layer.Activation;
        TiledProduct(p, aKAlongRows: true, bKAlongRows: true);
    }

    /// <summary>
    /// dW = (dZ s)^T (X r) and db = dZ^T 1 as products over the row-members (shared) or each member's rows (its
    /// own); then g = (dZ s) W, stored where r or shared input rows need it, else straight into dx = g f'(x)
    /// (with r and per-member rows, dx = g r f'(x) from the same epilogue, g kept).
    /// </summary>
    private void BatchedBackwardProducts(in BatchedLayerArgs a, bool withInputGradient)
    {
        var layer = a.Layer;
        bool perMemberWeights = layer.WeightStride > 0;
        var w = BatchedProduct(a, perMemberWeights);
        w.A = BatchedOutputGradient(a, rowMembers: true, scaled: true);
        w.B = BatchedInput(a);
        w.M = layer.Outputs;
        w.N = layer.Inputs;
        w.K = perMemberWeights ? a.Rows : a.Rows * a.Members;
        w.C = a.Gradients.SubView(layer.WeightOffset);
        w.CSlabStride = layer.WeightStride;
        TiledProduct(w, aKAlongRows: false, bKAlongRows: false);

        bool perMemberBias = layer.BiasStride > 0;
        var b = BatchedProduct(a, perMemberBias);
        b.A = BatchedOutputGradient(a, rowMembers: perMemberBias, scaled: false);
        b.B = ProductOperand.Of(RowSource.InPlace(Ones(a.Rows * a.Members), 1));
        b.M = layer.Outputs;
        b.N = 1;
        b.K = perMemberBias ? a.Rows : a.Rows * a.Members;
        b.C = a.Gradients.SubView(layer.BiasOffset);
        b.CSlabStride = layer.BiasStride;
        TiledProduct(b, aKAlongRows: false, bKAlongRows: false);

        if (layer.HasOutputScale)
            OutputScaleGradient(a);
        bool stored = layer.HasInputScale || a.InputShared != 0;
        if (!layer.HasInputScale && !withInputGradient)
            return;
        var g = BatchedProduct(a, perMemberWeights);
        g.A = BatchedOutputGradient(a, rowMembers: true, scaled: true);
        g.B = new ProductOperand { Rows = ParameterRows(a, layer.WeightOffset, layer.Inputs), SlabStride = layer.WeightStride };
        g.M = perMemberWeights ? a.Rows : a.Rows * a.Members;
        g.N = layer.Inputs;
        g.K = layer.Outputs;
        g.CRowMembers = 1;
        bool inputGradientHere = withInputGradient && a.InputShared == 0;
        if (inputGradientHere)
        {
            g.C = a.InputGradient;
            g.HasDerivative = 1;
            g.Derivative = a.X;
            g.DerivativeActivation = a.InputActivation;
            g.DerivativePre = a.InputPreActivation;
            if (layer.HasInputScale)
            {
                // The epilogue keeps g (for dr) and goes on to dx = g r f'(x).
                g.HasOutputScale = 1;
                g.OutputScale = a.Parameters.SubView(layer.InputScaleOffset);
                g.OutputScaleStride = layer.Inputs;
                g.PreScale = a.ScaledInputGradient;
            }
        }
        else
        {
            g.C = a.ScaledInputGradient;
        }
        TiledProduct(g, aKAlongRows: true, bKAlongRows: false);
        if (layer.HasInputScale)
            InputScaleGradient(a);
        if (withInputGradient && stored && !inputGradientHere)
            BatchedInputGradient(a);
    }

    private static void CheckBatched(in BatchedLayerArgs a, string what)
    {
        var layer = a.Layer;
        Require(a.Members >= 1 && a.Rows >= 0, $"{what}: members must be at least 1");
        a.X.Check(a.InputShared != 0 ? a.Rows : a.Rows * a.Members, $"{what} x");
        Require(a.X.Cols == layer.Inputs, $"{what}: x must have the layer's {layer.Inputs} columns");
        Require(a.X.Gathered == 0 || a.InputShared != 0, $"{what}: gathered input rows must be shared by the members (layer 0's)");
        Require(layer.Groups >= 1 && layer.Inputs % layer.Groups == 0 && layer.Outputs % layer.Groups == 0, $"{what}: the groups must divide the widths");
        long weights = (layer.WeightStride > 0 ? (long)a.Members : 1) * layer.Outputs * layer.InputsPerGroup;
        Require(layer.WeightOffset >= 0 && layer.WeightOffset + weights <= a.Parameters.Length
            && layer.BiasOffset + (layer.BiasStride > 0 ? (long)a.Members : 1) * layer.Outputs <= a.Parameters.Length
            && (!layer.HasInputScale || layer.InputScaleOffset + (long)a.Members * layer.Inputs <= a.Parameters.Length)
            && (!layer.HasOutputScale || layer.OutputScaleOffset + (long)a.Members * layer.Outputs <= a.Parameters.Length),
            $"{what}: the layer's tensors lie outside the parameters");
        Require(!layer.HasOutputScale || a.PreScale.Length >= (long)a.Rows * a.Members * layer.Outputs, $"{what}: pre-scale sums must hold (rows k, out)");
        Require(!layer.KeepsPreActivation || a.PreActivation.Length >= (long)a.Rows * a.Members * layer.Outputs,
            $"{what}: pre-activations must hold (rows k, out)");
        Require(a.InputActivation != (int)Activation.Cos || (a.InputShared == 0 && a.InputPreActivation.Length >= (long)a.Rows * a.Members * layer.Inputs),
            $"{what}: a cosine input needs its pre-activations (rows k, in)");
    }

    /// <summary>Y = f(((X r) W^T) s + b) for every row-member, PreScale kept where the layer has s.</summary>
    public void BatchedDenseForward(in BatchedLayerArgs a)
    {
        CheckBatched(a, "batched dense forward");
        Require(a.Y.Length >= (long)a.Rows * a.Members * a.Layer.Outputs, "batched dense forward: y must hold (rows k, out)");
        var layer = a.Layer;
        int slabRows = layer.WeightStride > 0 ? a.Rows : a.Rows * a.Members;
        var variant = Plan.LayerVariantFor(layer.Groups, slabRows, layer.Outputs, layer.InputsPerGroup);
        if (variant == DenseVariant.Tiled)
        {
            BatchedForwardProducts(a);
            return;
        }
        var shape = Plan.ShapeFor(a.Rows * a.Members * a.Layer.Outputs);
        if (variant == DenseVariant.Lanes)
            (lanesForward ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.LanesForwardKernel))(shape.Config, a, shape.BlockedFlag);
        else
            (batchedForward ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.SimpleForwardKernel))(shape.Config, a, shape.BlockedFlag);
    }

    /// <summary>The layer's parameter gradients (W, b, s, r), then, unless <paramref name="withInputGradient"/> is false, dL/dz of its input.</summary>
    public void BatchedDenseBackward(in BatchedLayerArgs a, bool withInputGradient)
    {
        CheckBatched(a, "batched dense backward");
        var layer = a.Layer;
        int rowMembers = a.Rows * a.Members;
        Require(a.OutputGradient.Length >= (long)rowMembers * layer.Outputs, "batched dense backward: output gradient must hold (rows k, out)");
        Require(a.Gradients.Length == a.Parameters.Length, "batched dense backward: gradients must match the parameters");
        // Every buffer checked before anything is launched (both routes below read them).
        bool stored = layer.HasInputScale || a.InputShared != 0;
        Require(!(stored && (layer.HasInputScale || withInputGradient)) || a.ScaledInputGradient.Length >= (long)rowMembers * layer.Inputs,
            "batched dense backward: scaled-input gradient must hold (rows k, in)");
        Require(!withInputGradient || a.InputGradient.Length >= (long)(a.InputShared != 0 ? a.Rows : rowMembers) * layer.Inputs,
            "batched dense backward: input gradient must hold its rows");
        var variant = Plan.LayerVariantFor(layer.Groups, layer.Outputs, layer.InputsPerGroup, layer.WeightStride > 0 ? a.Rows : rowMembers);
        if (variant == DenseVariant.Tiled)
        {
            BatchedBackwardProducts(a, withInputGradient);
            return;
        }
        bool lanes = variant == DenseVariant.Lanes;
        int parameterItems = (layer.WeightStride > 0 ? a.Members : 1) * layer.Outputs * layer.InputsPerGroup
            + (layer.BiasStride > 0 ? a.Members : 1) * layer.Outputs + (layer.HasOutputScale ? a.Members * layer.Outputs : 0);
        var shape = Plan.ShapeFor(parameterItems);
        (lanes ? lanesParameterGradient ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.LanesParameterGradientKernel)
            : batchedParameterGradient ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.SimpleParameterGradientKernel))(shape.Config, a, shape.BlockedFlag);
        if (!layer.HasInputScale && !withInputGradient)
            return;
        shape = Plan.ShapeFor(rowMembers * layer.Inputs);
        (lanes ? lanesScaledInputGradient ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.LanesScaledInputGradientKernel)
            : batchedScaledInputGradient ??= LoadKernel<BatchedLayerArgs, int>(BatchedDense.SimpleScaledInputGradientKernel))(shape.Config, a,
                shape.BlockedFlag);
        if (layer.HasInputScale)
            InputScaleGradient(a);
        if (withInputGradient && stored)
            BatchedInputGradient(a);
    }
}
