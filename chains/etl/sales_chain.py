"""A three-step ETL on made-up sales: generate a CSV, clean it, aggregate it. No network needed."""

import csv
import datetime as dt
import io
import logging
import random
from collections import defaultdict

import luigi

from nectar import NectarTask

logger = logging.getLogger(__name__)
REGIONS = ("north", "south", "east", "west")
PRODUCTS = ("apples", "pears", "plums", "quinces")


class GenerateSalesTask(NectarTask):
    """Generate one day of raw sales lines, some of them broken, as a CSV."""

    day = luigi.DateParameter(description="The sales day (YYYY-MM-DD).")
    rows = luigi.IntParameter(default=1000, description="How many raw lines to generate.")

    def run(self):
        rng = random.Random(f"{self.day}:{self.rows}")
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["day", "region", "product", "quantity", "unit_price"])
        for _ in range(self.rows):
            quantity = rng.randint(-2, 20)  # negative quantities are data errors to clean
            price = "" if rng.random() < 0.02 else f"{rng.uniform(0.5, 5):.2f}"
            writer.writerow([self.day.isoformat(), rng.choice(REGIONS), rng.choice(PRODUCTS), quantity, price])
        logger.info("generated %d lines for %s", self.rows, self.day)
        with self.output().open("w") as out:
            out.write(buffer.getvalue())


class CleanSalesTask(NectarTask):
    """Drop lines with a missing price or a quantity below ``min_quantity``."""

    day = luigi.DateParameter(description="The sales day (YYYY-MM-DD).")
    rows = luigi.IntParameter(default=1000, description="How many raw lines to generate.")
    min_quantity = luigi.IntParameter(default=1, description="Lines below this quantity are dropped.")

    def requires(self):
        return GenerateSalesTask(day=self.day, rows=self.rows)

    def run(self):
        kept = dropped = 0
        buffer = io.StringIO()
        with self.input().open() as raw:
            reader = csv.DictReader(raw)
            writer = csv.DictWriter(buffer, fieldnames=reader.fieldnames or [])
            writer.writeheader()
            for line in reader:
                if line["unit_price"] and int(line["quantity"]) >= self.min_quantity:
                    writer.writerow(line)
                    kept += 1
                else:
                    dropped += 1
        print(f"kept {kept} lines, dropped {dropped}")
        with self.output().open("w") as out:
            out.write(buffer.getvalue())


class AggregateSalesTask(NectarTask):
    """Sum quantity and revenue by region or product, for the chosen metrics."""

    day = luigi.DateParameter(description="The sales day (YYYY-MM-DD).")
    rows = luigi.IntParameter(default=1000, description="How many raw lines to generate.")
    min_quantity = luigi.IntParameter(default=1, description="Lines below this quantity are dropped.")
    group_by = luigi.ChoiceParameter(choices=("region", "product"), default="region", description="Group lines by.")
    metrics = luigi.ListParameter(default=("quantity", "revenue"), description="Any of: quantity, revenue.")

    def requires(self):
        return CleanSalesTask(day=self.day, rows=self.rows, min_quantity=self.min_quantity)

    def run(self):
        unknown = set(self.metrics) - {"quantity", "revenue"}
        if unknown:
            raise ValueError(f"unknown metrics: {sorted(unknown)}")
        totals = defaultdict(lambda: {"quantity": 0, "revenue": 0.0})
        with self.input().open() as clean:
            for line in csv.DictReader(clean):
                total = totals[line[self.group_by]]
                total["quantity"] += int(line["quantity"])
                total["revenue"] += int(line["quantity"]) * float(line["unit_price"])
        with self.output().open("w") as out:
            writer = csv.writer(out)
            writer.writerow([self.group_by, *self.metrics])
            for group in sorted(totals):
                writer.writerow([group, *(round(totals[group][m], 2) for m in self.metrics)])
        self.write_file("generated_at.txt", dt.datetime.now(dt.UTC).isoformat())
