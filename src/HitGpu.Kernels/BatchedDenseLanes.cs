// The batched layer's lanes kernels: four outputs that share their weights a work item (a GPU's for grouped layers).
using ILGPU;

namespace HitGpu.Kernels;

public static partial class BatchedDense
{
    // The lanes kernels: what a GPU runs for the layers its products do not cut (grouped ones, the embeddings).
    // A work item takes four outputs that share their weights (FourLanes: four row-members of one member, or
    // four inputs of one weight row), each summed exactly as the simple kernel sums it (the same terms in the
    // same order: the same bits), with the weight or the dz read once for four and the loops unrolled.

    /// <summary>Y = f(((X r) W^T) s + b): one output o of four row-members of one member a work item.</summary>
    public static void LanesForwardKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int k = a.Members, nOut = layer.Outputs, n = layer.InputsPerGroup, rowMembers = a.Rows * k, lanes = FourLanes.Of(rowMembers, k);
        var range = WorkRange.OfThread(lanes * nOut, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int o = e / lanes, q = e - o * lanes;
            if (q >= rowMembers)
                continue;
            int i = q % k, first = layer.FirstInput(o);
            long x0 = a.X.RowStart(InputRow(q, k, a.InputShared)) + first, x1 =
                a.X.RowStart(InputRow(FourLanes.Or(q, 1, lanes, rowMembers), k, a.InputShared)) + first;
            long x2 = a.X.RowStart(InputRow(FourLanes.Or(q, 2, lanes, rowMembers), k, a.InputShared)) + first;
            long x3 = a.X.RowStart(InputRow(FourLanes.Or(q, 3, lanes, rowMembers), k, a.InputShared)) + first;
            float bias = a.Parameters[layer.Bias(i) + o];
            var sums = FourLanes.Dots<GlobalLaneViews>(SumStart(layer, bias, SumOrder.FromBias), a.X.Data, x0, x1, x2, x3, a.Parameters,
                layer.Weight(i) + (long)o * n,
                layer.HasInputScale ? layer.InputScale(i) + first : -1, n);
            float s = layer.HasOutputScale ? a.Parameters[layer.OutputScale(i) + o] : 1f;
            for (int c = 0; c < 4 && q + c * lanes < rowMembers; c++)
                StoreOutput(new LayerRow(a, (q + c * lanes) * nOut), layer, o, sums[c], bias, s, SumOrder.FromBias, dropout: 1f);
        }
    }

    /// <summary>
    /// The parameter gradients: a work item four outputs by four inputs of one group's weights (16 of them,
    /// lanes of the group's outputs and inputs), each the sum over members of s_o r_j times the sum over the
    /// member's rows in order of dz x: a row-member's four dz and four x read once for sixteen; then one bias
    /// or output scale a work item, as the simple kernel does.
    /// </summary>
    public static void LanesParameterGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int k = a.Members, n = layer.InputsPerGroup, perGroup = layer.OutputsPerGroup, nOut = layer.Outputs, rowMembers = a.Rows * k;
        int inputLanes = FourLanes.Of(n, 1), outputLanes = FourLanes.Of(perGroup, 1), tiles = layer.Groups * outputLanes * inputLanes;
        int weightOwners = layer.WeightStride > 0 ? k : 1, biasOwners = layer.BiasStride > 0 ? k : 1;
        int weightItems = weightOwners * tiles, total = weightItems + biasOwners * nOut + (layer.HasOutputScale ? k * nOut : 0);
        var range = WorkRange.OfThread(total, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            if (e >= weightItems)
            {
                BiasOrScaleGradient(a, e - weightItems);
                continue;
            }
            int owner = e / tiles, rest = e - owner * tiles, group = rest / (outputLanes * inputLanes);
            rest -= group * outputLanes * inputLanes;
            int oq = rest / inputLanes, jq = rest - oq * inputLanes;
            int o0 = group * perGroup + oq, o1 = group * perGroup + FourLanes.Or(oq, 1, outputLanes, perGroup);
            int o2 = group * perGroup + FourLanes.Or(oq, 2, outputLanes, perGroup), o3 = group * perGroup + FourLanes.Or(oq, 3, outputLanes, perGroup);
            int j0 = group * n + jq, j1 = group * n + FourLanes.Or(jq, 1, inputLanes, n), j2 = group * n + FourLanes.Or(jq, 2, inputLanes, n),
                j3 = group * n + FourLanes.Or(jq, 3, inputLanes, n);
            // Member by member (a shared W sums every member's rows, one member after another), each member's
            // rows in order, its input row followed as rm moves (layer 0's rows are shared: rm / k), no division
            // a pass; a member's s_o and r_j multiply its sum once, as the GPU epoch sums. A per-member W without
            // adapters thus takes the simple kernel's very terms in its order: its bits.
            bool shared = a.InputShared != 0;
            int firstMember = weightOwners > 1 ? owner : 0, lastMember = weightOwners > 1 ? owner : k - 1, rowStep = shared ? 1 : k;
            var tile = new WeightTile { O0 = o0, O1 = o1, O2 = o2, O3 = o3, J0 = j0, J1 = j1, J2 = j2, J3 = j3, Outputs = nOut };
            Sums4 t0 = default, t1 = default, t2 = default, t3 = default;
            for (int i = firstMember; i <= lastMember; i++)
            {
                Sums4 s0 = default, s1 = default, s2 = default, s3 = default;
                // The first row-member outside the loop: the tile's indices are then used before it, and ILGPU's
                // code placement cannot sink their computation into every pass.
                int rm = i, row = shared ? 0 : i;
                if (rm < rowMembers)
                    WeightStep(ref s0, ref s1, ref s2, ref s3, a, tile, rm, row);
                for (rm += k, row += rowStep; rm < rowMembers; rm += k, row += rowStep)
                    WeightStep(ref s0, ref s1, ref s2, ref s3, a, tile, rm, row);
                var r = layer.HasInputScale ? Row4(a.Parameters.SubView(layer.InputScale(i)), j0, j1, j2, j3)
                    : new Sums4 { S0 = 1f, S1 = 1f, S2 = 1f, S3 = 1f };
                var sc = layer.HasOutputScale ? Row4(a.Parameters.SubView(layer.OutputScale(i)), o0, o1, o2, o3)
                    : new Sums4 { S0 = 1f, S1 = 1f, S2 = 1f, S3 = 1f };
                AddScaled(ref t0, s0, sc.S0, r);
                AddScaled(ref t1, s1, sc.S1, r);
                AddScaled(ref t2, s2, sc.S2, r);
                AddScaled(ref t3, s3, sc.S3, r);
            }
            long w = layer.Weight(owner) - (long)group * n;
            for (int c = 0; c < 4 && oq + c * outputLanes < perGroup; c++)
            {
                var sums = c == 0 ? t0 : c == 1 ? t1 : c == 2 ? t2 : t3;
                long at = w + (long)(group * perGroup + oq + c * outputLanes) * n + group * n + jq;
                for (int q = 0; q < 4 && jq + q * inputLanes < n; q++)
                    a.Gradients[at + q * inputLanes] = sums[q];
            }
        }
    }

    /// <summary>One output's terms of a 4 x 4 input-gradient tile: four dz (times s) by four weights, in the simple kernel's order.</summary>
    private static void TransposedStep(ref Sums4 g0, ref Sums4 g1, ref Sums4 g2, ref Sums4 g3, ArrayView<float> d0, ArrayView<float> d1, ArrayView<float> d2,
        ArrayView<float> d3, ArrayView<float> w0, ArrayView<float> w1, ArrayView<float> w2, ArrayView<float> w3, ArrayView<float> scales, int scaled,
            int o, int wo)
    {
        var d = new Sums4 { S0 = d0[o], S1 = d1[o], S2 = d2[o], S3 = d3[o] };
        if (scaled != 0)
        {
            float s = scales[o];
            d = new Sums4 { S0 = d.S0 * s, S1 = d.S1 * s, S2 = d.S2 * s, S3 = d.S3 * s };
        }
        var weights = new Sums4 { S0 = w0[wo], S1 = w1[wo], S2 = w2[wo], S3 = w3[wo] };
        AddOuter(ref g0, d.S0, weights);
        AddOuter(ref g1, d.S1, weights);
        AddOuter(ref g2, d.S2, weights);
        AddOuter(ref g3, d.S3, weights);
    }

    /// <summary>A 4 x 4 tile of a layer's weight gradient: its outputs and inputs, and where the adapters are (-1: none).</summary>
    private struct WeightTile
    {
        public long O0, O1, O2, O3, J0, J1, J2, J3; // 64-bit: a load's address is then its row's plus a constant
        public int Outputs;
    }

    /// <summary>Row-member rm's terms of a weight-gradient tile: four dz by four x (dz on the left, the simple kernel's order).</summary>
    private static void WeightStep(ref Sums4 s0, ref Sums4 s1, ref Sums4 s2, ref Sums4 s3, in BatchedLayerArgs a, in WeightTile t, int rm, int row)
    {
        var d = Row4(a.OutputGradient.SubView((long)rm * t.Outputs), t.O0, t.O1, t.O2, t.O3);
        var x = Row4(a.X.Data.SubView(a.X.RowStart(row)), t.J0, t.J1, t.J2, t.J3);
        AddOuter(ref s0, d.S0, x);
        AddOuter(ref s1, d.S1, x);
        AddOuter(ref s2, d.S2, x);
        AddOuter(ref s3, d.S3, x);
    }

    /// <summary>total_q += (sum_q s) r_q: a member's sums through its output scale s and input scales r.</summary>
    private static void AddScaled(ref Sums4 total, in Sums4 sum, float s, in Sums4 r)
    {
        total.S0 += sum.S0 * s * r.S0;
        total.S1 += sum.S1 * s * r.S1;
        total.S2 += sum.S2 * s * r.S2;
        total.S3 += sum.S3 * s * r.S3;
    }

    /// <summary>Elements c_0..c_3 of a view.</summary>
    private static Sums4 Row4(ArrayView<float> v, long c0, long c1, long c2, long c3) => new() { S0 = v[c0], S1 = v[c1], S2 = v[c2], S3 = v[c3] };


    /// <summary>sums_q += d x_q for the four q (d on the left: the simple kernels' order).</summary>
    private static void AddOuter(ref Sums4 sums, float d, in Sums4 x)
    {
        sums.S0 += d * x.S0;
        sums.S1 += d * x.S1;
        sums.S2 += d * x.S2;
        sums.S3 += d * x.S3;
    }

    /// <summary>
    /// g = (dz s) W_i at the layer's input: a work item four inputs of one group by four row-members of one
    /// member (16 of them), each summed over the group's outputs in order: per output four dz s and four
    /// weights read once for sixteen; then stored as the simple kernel stores it.
    /// </summary>
    public static void LanesScaledInputGradientKernel(BatchedLayerArgs a, int blocked)
    {
        var layer = a.Layer;
        int k = a.Members, nIn = layer.Inputs, nOut = layer.Outputs, n = layer.InputsPerGroup, rowMembers = a.Rows * k;
        int lanes = FourLanes.Of(rowMembers, k), inputLanes = FourLanes.Of(n, 1), perGroupItems = inputLanes * lanes;
        var range = WorkRange.OfThread(layer.Groups * perGroupItems, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int group = e / perGroupItems, rest = e - group * perGroupItems, jq = rest / lanes, q = rest - jq * lanes;
            if (q >= rowMembers)
                continue;
            int i = q % k, first = group * layer.OutputsPerGroup, end = first + layer.OutputsPerGroup;
            int c1 = FourLanes.Or(jq, 1, inputLanes, n), c2 = FourLanes.Or(jq, 2, inputLanes, n), c3 = FourLanes.Or(jq, 3, inputLanes, n);
            long r0 = (long)q * nOut, r1 = (long)FourLanes.Or(q, 1, lanes, rowMembers) * nOut;
            long r2 = (long)FourLanes.Or(q, 2, lanes, rowMembers) * nOut, r3 = (long)FourLanes.Or(q, 3, lanes, rowMembers) * nOut;
            // Views taken once, read at an index that steps (a view per step would cost its 64-bit address each step).
            ArrayView<float> d0 = a.OutputGradient.SubView(r0), d1 = a.OutputGradient.SubView(r1), d2 = a.OutputGradient.SubView(r2),
                d3 = a.OutputGradient.SubView(r3);
            ArrayView<float> w0 = a.Parameters.SubView(layer.Weight(i) + jq), w1 = a.Parameters.SubView(layer.Weight(i) + c1);
            ArrayView<float> w2 = a.Parameters.SubView(layer.Weight(i) + c2), w3 = a.Parameters.SubView(layer.Weight(i) + c3);
            var scales = a.Parameters.SubView(layer.HasOutputScale ? layer.OutputScale(i) : 0);
            Sums4 g0 = default, g1 = default, g2 = default, g3 = default; // g_r: row-member lane r's four inputs
            // The first output outside the loop: the item's indices are then used before it, and ILGPU's code
            // placement cannot sink their computation (divisions among them) into every pass.
            int scaled = layer.HasOutputScale ? 1 : 0;
            if (first < end) // always (a group has outputs), but it puts the loop's bound before the loop too
                TransposedStep(ref g0, ref g1, ref g2, ref g3, d0, d1, d2, d3, w0, w1, w2, w3, scales, scaled, first, first * n);
            for (int o = first + 1, wo = o * n; o < end; o++, wo += n)
                TransposedStep(ref g0, ref g1, ref g2, ref g3, d0, d1, d2, d3, w0, w1, w2, w3, scales, scaled, o, wo);
            for (int r = 0; r < 4 && q + r * lanes < rowMembers; r++)
            {
                int rm = q + r * lanes;
                var g = r == 0 ? g0 : r == 1 ? g1 : r == 2 ? g2 : g3;
                for (int c = 0; c < 4 && jq + c * inputLanes < n; c++)
                {
                    int j = group * n + jq + c * inputLanes, at = rm * nIn + j;
                    if (layer.HasInputScale || a.InputShared != 0)
                        a.ScaledInputGradient[at] = g[c];
                    else
                        a.InputGradient[at] = g[c] * InputSlope(a, rm, j);
                }
            }
        }
    }
}
