// The batched layer's three reductions that are not products: dr, ds and layer 0's sum over members.
namespace HitGpu.Kernels;

public static partial class BatchedDense
{
    // The three reductions that are not products (dr, ds, layer 0's sum over members) sum eight neighbouring
    // columns a work item (ColumnWindow) through cursors that step a row at a time (RowCursor): a row's terms
    // are then two 16-byte loads (or eight scalar ones from one address) per operand and eight multiply-adds,
    // not two loads and an address per multiply-add. Each column's terms are still added in row (or member)
    // order: the bits of one column at a time.

    /// <summary>
    /// Input scale gradients, the sums over each member's rows of g x, eight j a work item. Shared input rows
    /// (layer 0): four members a work item, a row a pass: their g are neighbouring rows and their x one row,
    /// looked up once (gathered rows) for all four; past the last member the loads repeat it and the stores
    /// stop. A row-member's own input rows (in place, as g's): one member a work item, four rows a pass, x and
    /// g stepping a row of k on together. A window narrower than eight sums one member a row at a time.
    /// </summary>
    public static void InputScaleGradientKernel<TLoads>(BatchedLayerArgs a, int blocked) where TLoads : struct, IProductLoads
    {
        int nIn = a.Layer.Inputs, k = a.Members, windows = ColumnWindow.Count(nIn);
        bool shared = a.InputShared != 0;
        int perItem = shared ? 4 : 1;
        long gStep = (long)k * nIn, gUnits = RowCursor<TLoads>.Units(gStep);
        var range = WorkRange.OfThread((k + perItem - 1) / perItem * windows, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int item = e / windows, i = perItem * item;
            var w = ColumnWindow.Of(e - item * windows, nIn);
            // Members i + m1..m3 of shared rows: the next three, clamped to the last (i itself for one a work item).
            int last = shared ? k - 1 - i : 0, m1 = Math.Min(1, last), m2 = Math.Min(2, last), m3 = Math.Min(3, last);
            Float8 s0 = default, s1 = default, s2 = default, s3 = default;
            long at = (long)i * nIn + w.First;
            if (!w.Wide)
            {
                s0 = NarrowInputScaleSum<TLoads>(a, w, i);
                s1 = NarrowInputScaleSum<TLoads>(a, w, i + m1);
                s2 = NarrowInputScaleSum<TLoads>(a, w, i + m2);
                s3 = NarrowInputScaleSum<TLoads>(a, w, i + m3);
            }
            else if (shared)
            {
                long g1 = RowCursor<TLoads>.Units((long)m1 * nIn), g2 = RowCursor<TLoads>.Units((long)(m2 - m1) * nIn),
                    g3 = RowCursor<TLoads>.Units((long)(m3 - m2) * nIn);
                for (int b = 0; b < a.Rows; b++, at += gStep)
                {
                    var x = RowCursor<TLoads>.At(a.X.Data, (long)a.X.RowStart(b) + w.First).Load();
                    var g = RowCursor<TLoads>.At(a.ScaledInputGradient, at);
                    s0 = Float8.Fma(s0, g.Load(), x);
                    g = g.Next(g1);
                    s1 = Float8.Fma(s1, g.Load(), x);
                    g = g.Next(g2);
                    s2 = Float8.Fma(s2, g.Load(), x);
                    g = g.Next(g3);
                    s3 = Float8.Fma(s3, g.Load(), x);
                }
            }
            else
            {
                // x's rows in place: row rm at (Offset + rm) Cols, Cols = nIn: from Offset on, where g's row rm is.
                var xRows = RowCursor<TLoads>.At(a.X.Data, a.X.RowStart(0));
                int b = 0;
                for (; b + 4 <= a.Rows; b += 4, at += 4 * gStep)
                {
                    RowCursor<TLoads> g = RowCursor<TLoads>.At(a.ScaledInputGradient, at), x = xRows.Next(RowCursor<TLoads>.Units(at));
                    s0 = Float8.Fma(s0, g.Load(), x.Load());
                    (g, x) = (g.Next(gUnits), x.Next(gUnits));
                    s0 = Float8.Fma(s0, g.Load(), x.Load());
                    (g, x) = (g.Next(gUnits), x.Next(gUnits));
                    s0 = Float8.Fma(s0, g.Load(), x.Load());
                    (g, x) = (g.Next(gUnits), x.Next(gUnits));
                    s0 = Float8.Fma(s0, g.Load(), x.Load());
                }
                for (; b < a.Rows; b++, at += gStep)
                    s0 = Float8.Fma(s0, RowCursor<TLoads>.At(a.ScaledInputGradient, at).Load(), xRows.Next(RowCursor<TLoads>.Units(at)).Load());
            }
            w.Store(a.Gradients, a.Layer.InputScale(i) + w.First, s0);
            if (m1 > 0)
                w.Store(a.Gradients, a.Layer.InputScale(i + m1) + w.First, s1);
            if (m2 > m1)
                w.Store(a.Gradients, a.Layer.InputScale(i + m2) + w.First, s2);
            if (m3 > m2)
                w.Store(a.Gradients, a.Layer.InputScale(i + m3) + w.First, s3);
        }
    }

    /// <summary>Member i's sum of g x over its rows for a window narrower than eight (loads clamped), in row order.</summary>
    private static Float8 NarrowInputScaleSum<TLoads>(in BatchedLayerArgs a, in ColumnWindow w, int i) where TLoads : struct, IProductLoads
    {
        int nIn = a.Layer.Inputs, k = a.Members, xRowStep = a.InputShared != 0 ? 1 : k, xRow = a.InputShared != 0 ? 0 : i;
        var sum = default(Float8);
        long at = (long)i * nIn + w.First;
        for (int b = 0; b < a.Rows; b++, at += (long)k * nIn, xRow += xRowStep)
            sum = Float8.Fma(sum, RowCursor<TLoads>.At(a.ScaledInputGradient, at).LoadClamped(w),
                RowCursor<TLoads>.At(a.X.Data, (long)a.X.RowStart(xRow) + w.First).LoadClamped(w));
        return sum;
    }

    /// <summary>One output scale's gradients (i, eight o) per work item: the sums over member i's rows of dL/dz times the sum before s, four rows a pass,
    /// in row order.</summary>
    public static void OutputScaleGradientKernel<TLoads>(BatchedLayerArgs a, int blocked) where TLoads : struct, IProductLoads
    {
        int nOut = a.Layer.Outputs, k = a.Members, windows = ColumnWindow.Count(nOut);
        long step = (long)k * nOut, units = RowCursor<TLoads>.Units(step);
        var range = WorkRange.OfThread(k * windows, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int i = e / windows, b = 0;
            var w = ColumnWindow.Of(e - i * windows, nOut);
            long at = (long)i * nOut + w.First;
            var sum = default(Float8);
            for (; w.Wide && b + 4 <= a.Rows; b += 4, at += 4 * step)
            {
                RowCursor<TLoads> d = RowCursor<TLoads>.At(a.OutputGradient, at), p = RowCursor<TLoads>.At(a.PreScale, at);
                sum = Float8.Fma(sum, d.Load(), p.Load());
                (d, p) = (d.Next(units), p.Next(units));
                sum = Float8.Fma(sum, d.Load(), p.Load());
                (d, p) = (d.Next(units), p.Next(units));
                sum = Float8.Fma(sum, d.Load(), p.Load());
                (d, p) = (d.Next(units), p.Next(units));
                sum = Float8.Fma(sum, d.Load(), p.Load());
            }
            for (; b < a.Rows; b++, at += step)
                sum = Float8.Fma(sum, RowCursor<TLoads>.At(a.OutputGradient, at).LoadClamped(w), RowCursor<TLoads>.At(a.PreScale, at).LoadClamped(w));
            w.Store(a.Gradients, a.Layer.OutputScale(i) + w.First, sum);
        }
    }

    /// <summary>
    /// Eight elements of dx per work item from the stored g: dx[rm] = g r_i f'(x) per row-member, or, for shared
    /// input rows, dx[b] = sum_i g[b k + i] r_i f'(x) (the inputs' gradient, for explanations), members in order,
    /// four a pass.
    /// </summary>
    public static void InputGradientKernel<TLoads>(BatchedLayerArgs a, int blocked) where TLoads : struct, IProductLoads
    {
        var layer = a.Layer;
        int nIn = layer.Inputs, k = a.Members, windows = ColumnWindow.Count(nIn);
        int rows = a.InputShared != 0 ? a.Rows : a.Rows * k, perRow = a.InputShared != 0 ? k : 1;
        long units = RowCursor<TLoads>.Units(nIn);
        var range = WorkRange.OfThread(rows * windows, blocked);
        for (int e = range.Start; e < range.End; e += range.Step)
        {
            int row = e / windows, m = 0;
            var w = ColumnWindow.Of(e - row * windows, nIn);
            long g = (long)row * perRow * nIn + w.First;
            var sum = default(Float8);
            if (layer.HasInputScale)
            {
                // Row-member row perRow + m has member m with shared rows (perRow = k), else its row mod k alone.
                long r = layer.InputScale(row * perRow % k) + w.First;
                for (; w.Wide && m + 4 <= perRow; m += 4, g += 4 * nIn, r += 4 * nIn)
                {
                    RowCursor<TLoads> gm = RowCursor<TLoads>.At(a.ScaledInputGradient, g), rm = RowCursor<TLoads>.At(a.Parameters, r);
                    sum = Float8.Fma(sum, gm.Load(), rm.Load());
                    (gm, rm) = (gm.Next(units), rm.Next(units));
                    sum = Float8.Fma(sum, gm.Load(), rm.Load());
                    (gm, rm) = (gm.Next(units), rm.Next(units));
                    sum = Float8.Fma(sum, gm.Load(), rm.Load());
                    (gm, rm) = (gm.Next(units), rm.Next(units));
                    sum = Float8.Fma(sum, gm.Load(), rm.Load());
                }
                for (; m < perRow; m++, g += nIn, r += nIn)
                    sum = Float8.Fma(sum, RowCursor<TLoads>.At(a.ScaledInputGradient, g).LoadClamped(w), RowCursor<TLoads>.At(a.Parameters, r).LoadClamped(w));
            }
            else
            {
                for (; m < perRow; m++, g += nIn)
                    sum = Float8.Add(sum, RowCursor<TLoads>.At(a.ScaledInputGradient, g).LoadClamped(w));
            }
            int j = w.First;
            w.Store(a.InputGradient, (long)row * nIn + j, new Float8(
                new Float4(sum.Lo.X * InputSlope(a, row, j), sum.Lo.Y * InputSlope(a, row, j + w.Clamped(1)),
                    sum.Lo.Z * InputSlope(a, row, j + w.Clamped(2)), sum.Lo.W * InputSlope(a, row, j + w.Clamped(3))),
                new Float4(sum.Hi.X * InputSlope(a, row, j + w.Clamped(4)), sum.Hi.Y * InputSlope(a, row, j + w.Clamped(5)),
                    sum.Hi.Z * InputSlope(a, row, j + w.Clamped(6)), sum.Hi.W * InputSlope(a, row, j + w.Clamped(7)))));
        }
    }

    /// <summary>One of the three reductions above, by name, with 16-byte or scalar loads.</summary>
    public static System.Reflection.MethodInfo ReductionKernelFor(string name, bool vector) =>
        typeof(BatchedDense).GetMethod(name)!.MakeGenericMethod(vector ? typeof(VectorLoads) : typeof(ScalarLoads));
}
