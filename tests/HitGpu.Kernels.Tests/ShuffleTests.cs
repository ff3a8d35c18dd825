// The device shuffle: a permutation of every row, seeded, equal to its reference, and spreading each row
// evenly over the positions across epochs.
namespace HitGpu.Kernels.Tests;

[Collection(AcceleratorCollection.Name)]
public sealed class ShuffleTests(AcceleratorFixture fixture)
{
    private readonly ComputeDevice device = fixture.Device;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(1000)]
    [InlineData(3864)]
    [InlineData(65537)]
    public void Kernel_makes_a_seeded_permutation_equal_to_its_reference(int n)
    {
        var source = Enumerable.Range(0, n).Select(i => i * 3 + 1).ToArray(); // rows of a bootstrap draw, say
        using var rows = device.Upload<int>(source, n);
        using var order = device.Allocate<int>(n);
        device.Permute(rows.View, order.View, n, seed: 42, epoch: 7);
        var actual = order.ToArray();
        var expected = new int[n];
        Shuffle.PermuteReference(source, expected, 42, 7);
        Assert.Equal(expected, actual);
        Assert.Equal(source, actual.Order()); // every row exactly once
        if (n >= 1000)
        {
            var other = new int[n];
            Shuffle.PermuteReference(source, other, 42, 8);
            Assert.NotEqual(expected, other);   // another epoch, another order
            Shuffle.PermuteReference(source, other, 43, 7);
            Assert.NotEqual(expected, other);   // another seed, another order
            Assert.True(expected.Where((v, i) => v == source[i]).Count() < n / 100, "most rows stayed in place");
        }
    }

    [Fact]
    public void Each_row_visits_every_position_about_equally_often_across_epochs()
    {
        // 10 rows over 4000 epochs: each (row, position) pair expected 400 times; a fair shuffle stays within
        // 400 +- 4 standard deviations (sd = sqrt(4000 * 0.1 * 0.9) = 19).
        const int n = 10, epochs = 4000;
        var counts = new int[n, n];
        var source = Enumerable.Range(0, n).ToArray();
        var order = new int[n];
        for (int e = 0; e < epochs; e++)
        {
            Shuffle.PermuteReference(source, order, 5, e);
            for (int i = 0; i < n; i++)
                counts[order[i], i]++;
        }
        foreach (int c in counts)
            Assert.InRange(c, 400 - 76, 400 + 76);
    }
}
