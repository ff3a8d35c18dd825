// The batched layer's simple kernels: one output a work item (the CPU accelerator's, and a GPU's for short sums).
namespace HitGpu.Kernels;

public static partial class BatchedDense
{
    // One output per work item, each a sum in row-member order: the CPU accelerator's kernels, and a GPU's where
    // DevicePlan.LayerVariantFor finds a product too small to tile. Every variant runs the three reductions
    // (BatchedDenseReductions.cs) after them.

    /// <summary>One output element (rm, o) per work item.</summary>
    public static void SimpleForwardKernel(BatchedLayerArgs a, int blocked)
    {
        int nOut = a.Layer.Outputs;
        var range = WorkRange.OfThread(a.Rows * a.Members * nOut, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int rm = e / nOut, o = e - rm * nOut;
            int member = rm % a.Members;
            float bias = a.Parameters[a.Layer.Bias(member) + o], s = a.Layer.HasOutputScale ? a.Parameters[a.Layer.OutputScale(member) + o] : 1f;
            float sum = InputSum(a.X.Data, a.X.RowStart(InputRow(rm, a.Members, a.InputShared)), a.Parameters, a.Layer, member, o, bias);
            StoreOutput(new LayerRow(a, e - o), a.Layer, o, sum, bias, s, SumOrder.FromBias, dropout: 1f);
        }
    }

    private static float ScaledGradient(in BatchedLayerArgs a, int rm, int o) =>
        a.Layer.HasOutputScale ? a.OutputGradient[rm * a.Layer.Outputs + o] * a.Parameters[a.Layer.OutputScale(rm % a.Members) + o]
            : a.OutputGradient[rm * a.Layer.Outputs + o];

    private static float ScaledInput(in BatchedLayerArgs a, int rm, int j)
    {
        float x = a.X.Data[a.X.RowStart(InputRow(rm, a.Members, a.InputShared)) + j];
        return a.Layer.HasInputScale ? x * a.Parameters[a.Layer.InputScale(rm % a.Members) + j] : x;
    }

    /// <summary>
    /// One parameter gradient per work item, each a sum over row-members in order: the weights (every
    /// member's, or the shared ones), then the biases, then the output scales s.
    /// </summary>
    public static void SimpleParameterGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int nIn = layer.InputsPerGroup, nOut = layer.Outputs, rowMembers = a.Rows * a.Members;
        int weightOwners = layer.WeightStride > 0 ? a.Members : 1, biasOwners = layer.BiasStride > 0 ? a.Members : 1;
        int weights = weightOwners * nOut * nIn, biases = biasOwners * nOut, scales = layer.HasOutputScale ? a.Members * nOut : 0;
        var range = WorkRange.OfThread(weights + biases + scales, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            float sum = 0f;
            if (e < weights)
            {
                int owner = e / (nOut * nIn), oj = e - owner * nOut * nIn, o = oj / nIn, j = oj - o * nIn;
                int first = weightOwners > 1 ? owner : 0, step = weightOwners > 1 ? a.Members : 1;
                int input = layer.FirstInput(o) + j;
                for (int rm = first; rm < rowMembers; rm += step)
                    sum += ScaledGradient(a, rm, o) * ScaledInput(a, rm, input);
                a.Gradients[layer.WeightOffset + e] = sum;
            }
            else
                BiasOrScaleGradient(a, e - weights);
        }
    }

    /// <summary>
    /// Element e of the layer's biases (every member's, or the shared ones) then output scales s: each a sum
    /// over the row-members in order, of dz, or of dz times the sum before s.
    /// </summary>
    private static void BiasOrScaleGradient(in BatchedLayerArgs a, int e)
    {
        var layer = a.Layer;
        int nOut = layer.Outputs, rowMembers = a.Rows * a.Members, biasOwners = layer.BiasStride > 0 ? a.Members : 1, biases = biasOwners * nOut;
        float sum = 0f;
        if (e < biases)
        {
            int owner = e / nOut, o = e - owner * nOut;
            int first = biasOwners > 1 ? owner : 0, step = biasOwners > 1 ? a.Members : 1;
            for (int rm = first; rm < rowMembers; rm += step)
                sum += a.OutputGradient[rm * nOut + o];
            a.Gradients[layer.BiasOffset + e] = sum;
            return;
        }
        int io = e - biases, i = io / nOut, oi = io - i * nOut;
        for (int rm = i; rm < rowMembers; rm += a.Members)
            sum += a.OutputGradient[rm * nOut + oi] * a.PreScale[rm * nOut + oi];
        a.Gradients[layer.OutputScaleOffset + io] = sum;
    }

    /// <summary>
    /// One element (rm, j) of g = dpre W_i per work item: stored in ScaledInputGradient when the layer has r or
    /// its input rows are shared (the kernels after this one read it), else straight to dx = g f'(x).
    /// </summary>
    public static void SimpleScaledInputGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int nIn = layer.Inputs, nOut = layer.Outputs;
        var range = WorkRange.OfThread(a.Rows * a.Members * nIn, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int rm = e / nIn, j = e - rm * nIn, perGroup = layer.InputsPerGroup, group = j / perGroup;
            int w = layer.Weight(rm % a.Members) + j - group * perGroup;
            float g = 0f;
            for (int o = group * layer.OutputsPerGroup; o < (group + 1) * layer.OutputsPerGroup; o++)
                g += ScaledGradient(a, rm, o) * a.Parameters[w + o * perGroup];
            if (layer.HasInputScale || a.InputShared != 0)
                a.ScaledInputGradient[e] = g;
            else
                a.InputGradient[e] = g * InputSlope(a, rm, j);
        }
    }
}
