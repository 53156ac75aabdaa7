// SPDX-License-Identifier: MIT
// bench/real-apps: a JVM heap larger than the budget. A HashMap of N entries, then three
// passes of N random lookups, each value checked, with a full collection (System.gc(), which
// moves every live object under the default G1) after each pass. Prints one line that must
// be the same in every configuration.
import java.util.HashMap;
import java.util.Random;

public class Big {
	public static void main(String[] args) {
		int n = Integer.parseInt(args[0]);
		HashMap<Integer, String> map = new HashMap<>();
		for (int i = 0; i < n; i++)
			map.put(i, "value-" + i + "-" + (i * 7919L % 100003));
		long sum = 0;
		Random random = new Random(1);
		for (int pass = 0; pass < 3; pass++) {
			for (int i = 0; i < n; i++) {
				int key = random.nextInt(n);
				String value = map.get(key);
				if (!value.equals("value-" + key + "-" + (key * 7919L % 100003)))
					throw new IllegalStateException("wrong value for " + key + ": " + value);
				sum += value.length();
			}
			System.gc();
		}
		System.out.println("ok " + map.size() + " " + sum);
	}
}
