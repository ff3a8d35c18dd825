// The tiled product, for GPUs and large layers: every dense product (the forward pass X W^T, the weight
// gradient dZ^T X, the bias gradient dZ^T 1, the input gradient dZ W) and every batched-ensemble product
// (BatchedDense.cs: the same three over row-members, with the adapters r and s) is one C = epilogue(A B).
//
// The known way (as in the public SGEMM walk-throughs): a group of (side x side) threads computes a square tile
// of 8 side outputs along M and N, each thread an 8 x 8 block in 64 scalar registers (ILGPU 1.5.3 unrolls
// nothing and would put an array in local memory, so the 8 k-steps of a slice are written out). A and B come
// through shared memory a slice of Depth = 8 at a time, stored k-major so that a thread reads its 8 values of
// A and of B as two 16-byte loads each; a thread's rows and columns are two runs of 4, half a tile apart, so
// that the 8 lanes of each phase of a 16-byte load read 128 contiguous bytes (no bank conflict), and rows are
// padded by 4 floats so that the transposing stores of a slice do not collide either. Global loads are 16
// bytes wide with lanes along the stored matrix's contiguous dimension; the next slice is fetched into
// registers while this one is multiplied, into the other of two shared buffers (one barrier a slice). How A
// and B are stored (k along their rows or across them) is a type argument: four kernels, no flag tested per
// element. A tile reaching past the matrix, or an operand that is not 16-byte aligned (the 15-input first
// layer), takes a guarded scalar load instead; the multiply is the same. A long sum over k (a weight
// gradient over a large batch) is cut into ranges, one per layer of the grid, whose partial sums a second
// launch adds in range order (split-K). Every sum runs in a fixed order: no atomics, the same bits each run.
//
// Rows are row-members (BatchedDense.cs) where a product says so: with per-member weights each member is a
// slab of the grid (row-member b k + i of member i), with shared ones the members interleave along the axis
// (member rm mod k), and the first layer's rows are shared by the k members (input row rm / k). An operand's
// elements may be scaled by its row's member's adapter (r or s) as they are loaded. Same tests, same
// references as Dense and BatchedDense.
using ILGPU;

namespace HitGpu.Kernels;

/// <summary>Four floats, 16 bytes: one vector load or store.</summary>
public struct Float4
{
    public float X, Y, Z, W;

    public Float4(float x, float y, float z, float w) => (X, Y, Z, W) = (x, y, z, w);
}

/// <summary>
/// One operand of a product, as stored: rows of <see cref="Rows"/> (with the slab's <see cref="SlabStride"/>
/// elements added), its rows row-members where <see cref="RowMembers"/> is set, each element scaled by
/// Scales[member of its row * ScaleStride + its column] where ScaleStride is not 0.
/// </summary>
public struct ProductOperand
{
    public RowSource Rows;
    public ArrayView<Float4> Vectors;   // Rows.Data as 16-byte vectors, when Aligned
    public int Aligned;                 // every row start and slab offset is a multiple of 4 floats (set by the launcher)
    public int SlabStride;              // elements between one slab's matrix and the next (per-member weights)
    public int RowMembers;              // 0: plain rows; 1: the stored rows are row-members; 2: input rows shared by them (rm / k)
    public int ScaleStride;             // 0: unscaled
    public ArrayView<float> Scales;     // the adapters, from the layer's first (r or s)

    /// <summary>A plain operand: its rows as stored, unscaled.</summary>
    public static ProductOperand Of(RowSource rows) => new() { Rows = rows };
}

/// <summary>
/// C (M, N) = epilogue(sum_k A(m, k) B(k, n)), once per slab. A(m, k) is stored at A's row m, column k, or (k
/// across A's rows) at row k, column m; likewise B. Row-members (Members above 1) run along the axis whose
/// operand rows have RowMembers set; with Slabs = Members each slab is one member (rm = b k + slab), with one
/// slab they interleave (member = rm mod k). The epilogue, per output: s (keeping the sum in PreScale), the
/// bias, the pre-activation kept, the activation, the derivative factor of an input gradient, then C.
/// </summary>
public struct ProductArgs
{
    public ProductOperand A, B;
    public int M, N, K;
    public int Members, Slabs;              // 0 reads as 1 (a plain product)
    public ArrayView<float> C;              // (rows of C, N) row-major; slab s at CSlabStride s
    public int CRowMembers, CSlabStride;    // 1: C's rows are row-members (its row is rm)
    public int HasBias, BiasStride;         // Bias[member * BiasStride + n]
    public ArrayView<float> Bias;
    public int HasOutputScale, OutputScaleStride; // sum * OutputScale[member * stride + n], the sum kept in PreScale
    public ArrayView<float> OutputScale, PreScale;
    public int KeepsPreActivation;
    public ArrayView<float> PreActivation;
    public int Activation;
    public int HasDerivative, DerivativeActivation; // times f'(Derivative(row, n)) (a cosine's from DerivativePre)
    public RowSource Derivative;
    public ArrayView<float> DerivativePre;
    public int Splits;                      // split-K: the sum over k cut into this many ranges (1: none)
    public ArrayView<float> Partials;       // (Splits, Slabs, M, N) the ranges' sums, when Splits > 1
}

/// <summary>The threads along each side of a group; the tile is 8 of them square.</summary>
public interface IProductTile
{
    int Side { get; }
}

/// <summary>128 x 128 outputs, 256 threads: large products.</summary>
public readonly struct LargeTile : IProductTile
{
    public int Side => 16;
}

/// <summary>64 x 64 outputs, 64 threads: mid-sized layers, whose products would fill too few large tiles.</summary>
public readonly struct SmallTile : IProductTile
{
    public int Side => 8;
}

/// <summary>How an operand is stored: k along its rows (A = X, B = W^T) or across them (A = dZ^T, B = W or X).</summary>
public interface IOperandStorage
{
    bool KAlongRows { get; }
}

public readonly struct KAlongRows : IOperandStorage
{
    bool IOperandStorage.KAlongRows => true;
}

public readonly struct KAcrossRows : IOperandStorage
{
    bool IOperandStorage.KAlongRows => false;
}

/// <summary>How a product loads its slices: 16-byte vectors (aligned, unscaled operands, whole slices), or guarded scalars (anything).</summary>
public interface IProductLoads
{
    bool Vector { get; }
}

public readonly struct VectorLoads : IProductLoads
{
    public bool Vector => true;
}

public readonly struct ScalarLoads : IProductLoads
{
    public bool Vector => false;
}

public enum ProductTileSize { Small, Large }

public static class DenseTiled
{
    /// <summary>The k-slice of A and B that each step brings into shared memory.</summary>
    public const int Depth = 8;

    /// <summary>Floats a shared row is padded by (keeps the transposing stores off each other's banks).</summary>
    private const int Pad = 4;

    /// <summary>Threads along a side of the tile.</summary>
    public static int Side(ProductTileSize tile) => tile == ProductTileSize.Large ? default(LargeTile).Side : default(SmallTile).Side;

    /// <summary>Outputs along a side of the tile (8 per thread).</summary>
    public static int TileOutputs(ProductTileSize tile) => 8 * Side(tile);

    /// <summary>Shared memory of one group: two buffers of A's and B's slices.</summary>
    public static int SharedBytes(ProductTileSize tile) => 4 * 2 * 2 * Depth * (TileOutputs(tile) + Pad);

    // ---- where an operand's element lies ----

    /// <summary>The row-member of index i of an axis carrying them, in slab <paramref name="slab"/>.</summary>
    private static int RowMember(in ProductArgs a, int i, int slab) => a.Slabs > 1 ? i * a.Members + slab : i;

    /// <summary>The member of row-member rm.</summary>
    private static int MemberOf(in ProductArgs a, int rm, int slab) => a.Slabs > 1 ? slab : a.Members > 1 ? rm % a.Members : 0;

    /// <summary>The first element of the operand's stored row for axis index i (slab added), and where its scales start.</summary>
    private static int RowStart(in ProductArgs a, in ProductOperand op, int i, int slab, out int scaleStart)
    {
        int row = i, member = 0;
        if (op.RowMembers != 0)
        {
            int rm = RowMember(a, i, slab);
            member = MemberOf(a, rm, slab);
            row = op.RowMembers == 2 ? rm / a.Members : rm;
        }
        scaleStart = member * op.ScaleStride;
        return op.Rows.RowStart(row) + slab * op.SlabStride;
    }

    private static float Scale(in ProductOperand op, int scaleStart, int column) => op.ScaleStride != 0 ? op.Scales[scaleStart + column] : 1f;

    /// <summary>One stored element, scaled, or 0 past the end of the sum (<paramref name="kEnd"/>).</summary>
    private static float Guarded(in ProductOperand op, int start, int scaleStart, int column, int k, int kEnd) =>
        k < kEnd ? op.Rows.Data[start + column] * Scale(op, scaleStart, column) : 0f;

    /// <summary>
    /// One thread's share of an operand's (Depth x tile) slice from k0, for load slot q. A k-along-rows operand:
    /// row q / 2 of the tile (its start fixed, <paramref name="fixedStart"/>), k0 + 4 (q mod 2) on: two lanes a
    /// row, 32 contiguous bytes. A k-across-rows operand: row k0 + q / (tile / 4), from column
    /// <paramref name="column"/> = 4 (q mod (tile / 4)) of the tile on: lanes along the row. Rows and columns
    /// past the matrix are read clamped to its last (they only reach outputs that are never stored); the sum's
    /// end is guarded on the scalar path and a whole slice on the vector path.
    /// </summary>
    private static Float4 LoadSlice<TStorage, TLoads>(in ProductArgs a, in ProductOperand op, int q, int tile, int column, int outerEnd,
        int k0, int kEnd, int slab, int fixedStart, int fixedScale)
        where TStorage : struct, IOperandStorage
        where TLoads : struct, IProductLoads
    {
        bool vector = default(TLoads).Vector;
        if (default(TStorage).KAlongRows)
        {
            int k = k0 + ((q & 1) << 2);
            if (vector)
                return op.Vectors[(fixedStart + k) >> 2];
            return new Float4(Guarded(op, fixedStart, fixedScale, k, k, kEnd), Guarded(op, fixedStart, fixedScale, k + 1, k + 1, kEnd),
                Guarded(op, fixedStart, fixedScale, k + 2, k + 2, kEnd), Guarded(op, fixedStart, fixedScale, k + 3, k + 3, kEnd));
        }
        int row = k0 + (int)((uint)q / (uint)(tile >> 2));
        if (vector) // whole slices of rows that are not row-members (the launcher sees to it); outerEnd a multiple of 4
            return op.Vectors[(op.Rows.RowStart(row) + column) >> 2];
        int start = RowStart(a, op, Math.Min(row, kEnd - 1), slab, out int scaleStart);
        int last = outerEnd - 1;
        return new Float4(Guarded(op, start, scaleStart, Math.Min(column, last), row, kEnd),
            Guarded(op, start, scaleStart, Math.Min(column + 1, last), row, kEnd),
            Guarded(op, start, scaleStart, Math.Min(column + 2, last), row, kEnd), Guarded(op, start, scaleStart, Math.Min(column + 3, last), row, kEnd));
    }

    /// <summary>Stores a thread's loaded vector into the slice buffer at <paramref name="buffer"/> (floats), k-major, rows padded.</summary>
    private static void StoreSlice<TStorage>(ArrayView<float> shared, int buffer, int q, int tile, Float4 v)
        where TStorage : struct, IOperandStorage
    {
        int stride = tile + Pad;
        if (default(TStorage).KAlongRows)
        {
            // Transposed: the 4 values are 4 k-steps of one row of the tile.
            int at = buffer + ((q & 1) << 2) * stride + (q >> 1);
            shared[at] = v.X;
            shared[at + stride] = v.Y;
            shared[at + 2 * stride] = v.Z;
            shared[at + 3 * stride] = v.W;
        }
        else
        {
            int perRow = tile >> 2;
            int at = buffer + (int)((uint)q / (uint)perRow) * stride + ((int)((uint)q % (uint)perRow) << 2);
            shared[at] = v.X;
            shared[at + 1] = v.Y;
            shared[at + 2] = v.Z;
            shared[at + 3] = v.W;
        }
    }

    /// <summary>
    /// What of load slot q stays the same every slice: a k-along-rows operand's row start and scales (its
    /// row clamped to the matrix), a k-across-rows operand's first column.
    /// </summary>
    private static int FixedStart<TStorage, TLoads>(in ProductArgs a, in ProductOperand op, int q, int tile, int outer0, int outerEnd, int slab,
        out int scaleStart, out int column)
        where TStorage : struct, IOperandStorage
        where TLoads : struct, IProductLoads
    {
        scaleStart = 0;
        column = 0;
        if (!default(TStorage).KAlongRows)
        {
            // The vector path reads the column clamped (outerEnd is a multiple of 4 there), with the slab's offset.
            column = outer0 + ((int)((uint)q % (uint)(tile >> 2)) << 2);
            if (default(TLoads).Vector)
                column = Math.Min(column, outerEnd - 4) + slab * op.SlabStride;
            return 0;
        }
        return RowStart(a, op, Math.Min(outer0 + (q >> 1), outerEnd - 1), slab, out scaleStart);
    }

    private static Float4 Fma(Float4 c, float a, Float4 b) => new(c.X + a * b.X, c.Y + a * b.Y, c.Z + a * b.Z, c.W + a * b.W);

    /// <summary>A thread's 8 x 8 sums: row i's columns 4 tx on in Ri, half a tile on in Si (scalar registers once compiled).</summary>
    private struct Block
    {
        public Float4 R0, S0, R1, S1, R2, S2, R3, S3, R4, S4, R5, S5, R6, S6, R7, S7;
    }

    /// <summary>One k-step: the thread's 8 values of A and 8 of B (two 16-byte shared loads each) into its 64 sums.</summary>
    private static Block Step(Block c, ArrayView<Float4> aSlice, ArrayView<Float4> bSlice, int k, int half4)
    {
        Float4 a0 = aSlice[k], a1 = aSlice[k + half4], b0 = bSlice[k], b1 = bSlice[k + half4];
        c.R0 = Fma(c.R0, a0.X, b0); c.S0 = Fma(c.S0, a0.X, b1); c.R1 = Fma(c.R1, a0.Y, b0); c.S1 = Fma(c.S1, a0.Y, b1);
        c.R2 = Fma(c.R2, a0.Z, b0); c.S2 = Fma(c.S2, a0.Z, b1); c.R3 = Fma(c.R3, a0.W, b0); c.S3 = Fma(c.S3, a0.W, b1);
        c.R4 = Fma(c.R4, a1.X, b0); c.S4 = Fma(c.S4, a1.X, b1); c.R5 = Fma(c.R5, a1.Y, b0); c.S5 = Fma(c.S5, a1.Y, b1);
        c.R6 = Fma(c.R6, a1.Z, b0); c.S6 = Fma(c.S6, a1.Z, b1); c.R7 = Fma(c.R7, a1.W, b0); c.S7 = Fma(c.S7, a1.W, b1);
        return c;
    }

    /// <summary>
    /// One group per tile of C (and per slab and k-range: the grid's third axis is slab * Splits + range),
    /// (side x side) threads; dynamic shared memory of <see cref="SharedBytes"/>.
    /// </summary>
    public static void ProductKernel<TTile, TA, TB, TLoads>(ProductArgs a)
        where TTile : struct, IProductTile
        where TA : struct, IOperandStorage
        where TB : struct, IOperandStorage
        where TLoads : struct, IProductLoads
    {
        int side = default(TTile).Side, tile = 8 * side, threads = side * side, slots = 16 / side;
        int stride4 = (tile + Pad) >> 2, half4 = tile >> 3; // in vectors: a padded shared row; half a tile
        var shared4 = SharedMemory.GetDynamic<Float4>();
        var shared = shared4.Cast<float>();
        int t = Group.IdxX, tx = t % side, ty = t / side;
        int m0 = Grid.IdxY * tile, n0 = Grid.IdxX * tile;
        int slab = Grid.IdxZ / a.Splits, range = Grid.IdxZ - slab * a.Splits;
        // Split-K: this group sums k in [kStart, kEnd), whole Depth slices at a time.
        int chunk = (a.K + a.Splits - 1) / a.Splits;
        chunk = (chunk + Depth - 1) / Depth * Depth;
        int kStart = range * chunk, kEnd = Math.Min(a.K, kStart + chunk);
        // A's slice then B's, twice (double buffering): Depth padded rows each.
        int sliceFloats = Depth * (tile + Pad), bufferFloats = 2 * sliceFloats;

        // Load slots (one with the large tile, two with the small): fixed row starts of k-along-rows operands.
        int q0 = t, q1 = t + threads;
        int a0Start = FixedStart<TA, TLoads>(a, a.A, q0, tile, m0, a.M, slab, out int a0Scale, out int a0Column);
        int a1Start = FixedStart<TA, TLoads>(a, a.A, q1, tile, m0, a.M, slab, out int a1Scale, out int a1Column);
        int b0Start = FixedStart<TB, TLoads>(a, a.B, q0, tile, n0, a.N, slab, out int b0Scale, out int b0Column);
        int b1Start = FixedStart<TB, TLoads>(a, a.B, q1, tile, n0, a.N, slab, out int b1Scale, out int b1Column);

        var c = default(Block);
        // Double buffering: slice i is multiplied from buffer i mod 2 while slice i + 1 waits in the other and
        // slice i + 2's loads are in flight into registers. Each pass starts at the one barrier: every thread has
        // then stored slice i and finished multiplying slice i - 1 from the buffer that slice i + 1 now takes.
        // The multiply comes last in the pass, so nothing separates the shared loads from their multiply-adds.
        Float4 la0 = default, la1 = default, lb0 = default, lb1 = default;
        if (kStart < kEnd)
        {
            la0 = LoadSlice<TA, TLoads>(a, a.A, q0, tile, a0Column, a.M, kStart, kEnd, slab, a0Start, a0Scale);
            lb0 = LoadSlice<TB, TLoads>(a, a.B, q0, tile, b0Column, a.N, kStart, kEnd, slab, b0Start, b0Scale);
            StoreSlice<TA>(shared, 0, q0, tile, la0);
            StoreSlice<TB>(shared, sliceFloats, q0, tile, lb0);
            if (slots == 2)
            {
                la1 = LoadSlice<TA, TLoads>(a, a.A, q1, tile, a1Column, a.M, kStart, kEnd, slab, a1Start, a1Scale);
                lb1 = LoadSlice<TB, TLoads>(a, a.B, q1, tile, b1Column, a.N, kStart, kEnd, slab, b1Start, b1Scale);
                StoreSlice<TA>(shared, 0, q1, tile, la1);
                StoreSlice<TB>(shared, sliceFloats, q1, tile, lb1);
            }
        }
        if (kStart + Depth < kEnd)
        {
            la0 = LoadSlice<TA, TLoads>(a, a.A, q0, tile, a0Column, a.M, kStart + Depth, kEnd, slab, a0Start, a0Scale);
            lb0 = LoadSlice<TB, TLoads>(a, a.B, q0, tile, b0Column, a.N, kStart + Depth, kEnd, slab, b0Start, b0Scale);
            if (slots == 2)
            {
                la1 = LoadSlice<TA, TLoads>(a, a.A, q1, tile, a1Column, a.M, kStart + Depth, kEnd, slab, a1Start, a1Scale);
                lb1 = LoadSlice<TB, TLoads>(a, a.B, q1, tile, b1Column, a.N, kStart + Depth, kEnd, slab, b1Start, b1Scale);
            }
        }
        int current = 0;
        for (int k0 = kStart; k0 < kEnd; k0 += Depth)
        {
            Group.Barrier();
            if (k0 + Depth < kEnd)
            {
                int other = (1 - current) * bufferFloats;
                StoreSlice<TA>(shared, other, q0, tile, la0);
                StoreSlice<TB>(shared, other + sliceFloats, q0, tile, lb0);
                if (slots == 2)
                {
                    StoreSlice<TA>(shared, other, q1, tile, la1);
                    StoreSlice<TB>(shared, other + sliceFloats, q1, tile, lb1);
                }
                int after = k0 + 2 * Depth;
                if (after < kEnd)
                {
                    la0 = LoadSlice<TA, TLoads>(a, a.A, q0, tile, a0Column, a.M, after, kEnd, slab, a0Start, a0Scale);
                    lb0 = LoadSlice<TB, TLoads>(a, a.B, q0, tile, b0Column, a.N, after, kEnd, slab, b0Start, b0Scale);
                    if (slots == 2)
                    {
                        la1 = LoadSlice<TA, TLoads>(a, a.A, q1, tile, a1Column, a.M, after, kEnd, slab, a1Start, a1Scale);
                        lb1 = LoadSlice<TB, TLoads>(a, a.B, q1, tile, b1Column, a.N, after, kEnd, slab, b1Start, b1Scale);
                    }
                }
            }
            // The slice's 8 k-steps, written out: 512 multiply-adds from 32 16-byte shared loads at fixed offsets
            // from this slice's two views (so that the compiler folds them into the loads).
            // The thread's place read afresh from its index (cheaper than holding it through the loop).
            uint thread = (uint)Group.IdxX;
            var aSlice = shared4.SubView((current * bufferFloats >> 2) + (int)(thread / (uint)side));
            var bSlice = shared4.SubView((current * bufferFloats + sliceFloats >> 2) + (int)(thread % (uint)side));
            c = Step(c, aSlice, bSlice, 0, half4);
            c = Step(c, aSlice, bSlice, stride4, half4);
            c = Step(c, aSlice, bSlice, 2 * stride4, half4);
            c = Step(c, aSlice, bSlice, 3 * stride4, half4);
            c = Step(c, aSlice, bSlice, 4 * stride4, half4);
            c = Step(c, aSlice, bSlice, 5 * stride4, half4);
            c = Step(c, aSlice, bSlice, 6 * stride4, half4);
            c = Step(c, aSlice, bSlice, 7 * stride4, half4);
            current = 1 - current;
        }
        // The thread's rows: 4 from ty 4, 4 more half a tile on; likewise its columns. The slab and range read
        // again (not kept through the loop).
        slab = Grid.IdxZ / a.Splits;
        range = Grid.IdxZ - slab * a.Splits;
        int r0 = m0 + 4 * ty, r1 = r0 + tile / 2, col0 = n0 + 4 * tx, col1 = col0 + tile / 2;
        Store4(a, slab, range, r0, col0, col1, c.R0, c.S0); Store4(a, slab, range, r0 + 1, col0, col1, c.R1, c.S1);
        Store4(a, slab, range, r0 + 2, col0, col1, c.R2, c.S2); Store4(a, slab, range, r0 + 3, col0, col1, c.R3, c.S3);
        Store4(a, slab, range, r1, col0, col1, c.R4, c.S4); Store4(a, slab, range, r1 + 1, col0, col1, c.R5, c.S5);
        Store4(a, slab, range, r1 + 2, col0, col1, c.R6, c.S6); Store4(a, slab, range, r1 + 3, col0, col1, c.R7, c.S7);
    }

    /// <summary>One row's 8 sums of a thread: 4 at col0, 4 at col1.</summary>
    private static void Store4(in ProductArgs a, int slab, int range, int m, int col0, int col1, Float4 lo, Float4 hi)
    {
        if (m >= a.M)
            return;
        Store(a, slab, range, m, col0, lo.X); Store(a, slab, range, m, col0 + 1, lo.Y);
        Store(a, slab, range, m, col0 + 2, lo.Z); Store(a, slab, range, m, col0 + 3, lo.W);
        Store(a, slab, range, m, col1, hi.X); Store(a, slab, range, m, col1 + 1, hi.Y);
        Store(a, slab, range, m, col1 + 2, hi.Z); Store(a, slab, range, m, col1 + 3, hi.W);
    }

    /// <summary>One output's sum: with split-K into this range's partial sums, else through the epilogue into C.</summary>
    private static void Store(in ProductArgs a, int slab, int range, int m, int n, float sum)
    {
        if (n >= a.N)
            return;
        if (a.Splits > 1)
            a.Partials[((range * a.Slabs + slab) * a.M + m) * a.N + n] = sum;
        else
            Finish(a, slab, m, n, sum);
    }

    /// <summary>Split-K's second launch: each output's partial sums added in range order (the same bits each run), then the epilogue.</summary>
    public static void SumPartialsKernel(ProductArgs a, int blocked)
    {
        int outputs = a.M * a.N, all = a.Slabs * outputs;
        var work = WorkRange.OfThread(all, blocked);
        for (int e = work.Start; e < work.End; e += work.Step)
        {
            float sum = 0f;
            for (int s = 0; s < a.Splits; s++)
                sum += a.Partials[s * all + e];
            int slab = e / outputs, mn = e - slab * outputs, m = mn / a.N;
            Finish(a, slab, m, mn - m * a.N, sum);
        }
    }

    /// <summary>The epilogue of one output: s (the sum kept), the bias, the pre-activation kept, the activation, an input gradient's derivative
    /// factor.</summary>
    private static void Finish(in ProductArgs a, int slab, int m, int n, float sum)
    {
        int row = m, member = 0;
        if (a.CRowMembers != 0)
        {
            row = RowMember(a, m, slab);
            member = MemberOf(a, row, slab);
        }
        int at = row * a.N + n + slab * a.CSlabStride;
        if (a.HasOutputScale != 0)
        {
            a.PreScale[at] = sum;
            sum *= a.OutputScale[member * a.OutputScaleStride + n];
        }
        if (a.HasBias != 0)
            sum += a.Bias[member * a.BiasStride + n];
        if (a.KeepsPreActivation != 0)
            a.PreActivation[at] = sum;
        sum = Activations.Apply(a.Activation, sum);
        if (a.HasDerivative != 0)
            sum *= Activations.Derivative(a.DerivativeActivation, a.Derivative.Data[a.Derivative.RowStart(row) + n],
                a.DerivativeActivation == (int)Kernels.Activation.Cos ? a.DerivativePre[row * a.N + n] : 0f);
        a.C[at] = sum;
    }

    /// <summary>The kernel of a tile, A's and B's storage (k along their rows or across) and the loads.</summary>
    public static System.Reflection.MethodInfo ProductKernelFor(ProductTileSize tile, bool aKAlongRows, bool bKAlongRows, bool vector) =>
        typeof(DenseTiled).GetMethod(nameof(ProductKernel))!.MakeGenericMethod(
            tile == ProductTileSize.Large ? typeof(LargeTile) : typeof(SmallTile),
            aKAlongRows ? typeof(KAlongRows) : typeof(KAcrossRows), bKAlongRows ? typeof(KAlongRows) : typeof(KAcrossRows),
            vector ? typeof(VectorLoads) : typeof(ScalarLoads));
}

public sealed partial class ComputeDevice
{
    private readonly Dictionary<(ProductTileSize, bool, bool, bool), Action<KernelConfig, ProductArgs>> tiledProducts = [];
    private Action<KernelConfig, ProductArgs, int>? sumPartials;
    private DeviceBuffer<float>? ones, partials;

    /// <summary>A column of ones, at least <paramref name="rows"/> long: the bias gradient is dZ^T times it.</summary>
    private ArrayView<float> Ones(int rows)
    {
        if (ones is null || ones.Length < rows)
        {
            ones?.Dispose();
            ones = Upload<float>(Enumerable.Repeat(1f, Math.Max(rows, 1024)).ToArray(), Math.Max(rows, 1024));
        }
        return ones.View;
    }

    /// <summary>Whether a view starts on 16 bytes (its buffer does): element 4 n of it can be read as a Float4.</summary>
    internal static bool IsVectorAligned(ArrayView<float> view) => ((IContiguousArrayView)view).Index % 4 == 0;

    /// <summary>An operand whose every row start is a multiple of 4 floats gets its 16-byte view.</summary>
    private static ProductOperand Vectorised(ProductOperand op)
    {
        bool aligned = IsVectorAligned(op.Rows.Data) && op.Rows.Cols % 4 == 0 && op.SlabStride % 4 == 0 && op.Rows.Data.Length >= 4;
        op.Aligned = aligned ? 1 : 0;
        op.Vectors = aligned ? op.Rows.Data.SubView(0, op.Rows.Data.Length / 4 * 4).Cast<Float4>() : default;
        return op;
    }

    /// <summary>C = epilogue(A B) by the tiled kernel, with the tile the plan picks for the shape; sizes checked on the host first.</summary>
    public void TiledProduct(ProductArgs a, bool aKAlongRows, bool bKAlongRows)
    {
        Require(a.M >= 1 && a.N >= 1 && a.K >= 1, $"tiled product: sizes must be positive, got ({a.M}, {a.N}, {a.K})");
        var launch = a;
        launch.Members = Math.Max(1, a.Members);
        launch.Slabs = Math.Max(1, a.Slabs);
        a = launch;
        Require(a.Members >= 1 && (a.Slabs == 1 || a.Slabs == a.Members), "tiled product: one slab, or one per member");
        Require(a.CRowMembers != 0 || a.C.Length >= (long)a.M * a.N + (long)(a.Slabs - 1) * a.CSlabStride, "tiled product: C must hold (M, N)");
        a.A.Rows.Check(a.A.RowMembers != 0 ? 1 : aKAlongRows ? a.M : a.K, "tiled product A");
        a.B.Rows.Check(a.B.RowMembers != 0 ? 1 : bKAlongRows ? a.N : a.K, "tiled product B");
        Require(a.HasBias == 0 || a.Bias.Length >= (long)(a.Members - 1) * a.BiasStride + a.N, "tiled product: the bias must hold N values");
        if (a.HasDerivative != 0 && a.CRowMembers == 0)
            a.Derivative.Check(a.M, "tiled product derivative");
        var tile = Plan.TileFor(a.M, a.N, a.Slabs);
        int outputs = DenseTiled.TileOutputs(tile), side = DenseTiled.Side(tile);
        launch.A = Vectorised(a.A);
        launch.B = Vectorised(a.B);
        launch.Splits = DevicePlan.SplitsFor(a.M * a.N * a.Slabs, a.K);
        if (launch.Splits > 1)
        {
            long room = (long)launch.Splits * a.Slabs * a.M * a.N;
            if (partials is null || partials.Length < room)
            {
                partials?.Dispose();
                partials = Allocate<float>((int)room);
            }
            launch.Partials = partials.View;
        }
        else
        {
            launch.Partials = a.C; // not read
        }
        var config = new KernelConfig(new Index3D((a.N + outputs - 1) / outputs, (a.M + outputs - 1) / outputs, launch.Splits * a.Slabs),
            new Index3D(side * side, 1, 1), SharedMemoryConfig.RequestDynamic<byte>(DenseTiled.SharedBytes(tile)));
        // 16-byte loads where both operands allow them, every range is whole slices (K a multiple of Depth) and
        // rows along k are plain (row-members there would cost divisions every slice).
        bool vector = launch.A.Aligned != 0 && launch.B.Aligned != 0 && a.A.ScaleStride == 0 && a.B.ScaleStride == 0 && a.K % DenseTiled.Depth == 0
            && (aKAlongRows || (a.M % 4 == 0 && a.A.RowMembers == 0)) && (bKAlongRows || (a.N % 4 == 0 && a.B.RowMembers == 0));
        var key = (tile, aKAlongRows, bKAlongRows, vector);
        if (!tiledProducts.TryGetValue(key, out var kernel))
            tiledProducts[key] = kernel = LoadKernel<ProductArgs>(
                DenseTiled.ProductKernelFor(tile, aKAlongRows, bKAlongRows, vector).CreateDelegate<Action<ProductArgs>>(), Plan.ProductSpecialization(tile));
        kernel(config, launch);
        if (launch.Splits > 1)
        {
            var shape = Plan.ShapeFor(a.Slabs * a.M * a.N);
            (sumPartials ??= LoadKernel<ProductArgs, int>(DenseTiled.SumPartialsKernel))(shape.Config, launch, shape.BlockedFlag);
        }
    }
}
