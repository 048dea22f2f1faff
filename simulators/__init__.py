"""A virtual city that speaks the LCCM device contract (docs/contract.md) over MQTT, with known ground truth.

It stands in for a device vendor: it imports nothing from the rest of the project. The default city is Lampang
City Municipality (simulators/cities/lampang.yaml): municipal buildings with electricity meters, streetlight
cabinets and lamps, air-quality stations (two near the Mae Moh lignite plant), fleet vehicles and standby
generators with fuel meters.

    from lccm.simulators.city import load_city
    from lccm.simulators.run import SimConfig, run_simulation

    city = load_city()
    city.devices_csv("devices.csv")                    # registry for `lccm devices import`
    truth = run_simulation(city, SimConfig(port=1883, start=..., end=..., faults=True))
    truth.expected_readings(), truth.expected_dead_letters()

Module map: city (YAML -> sites and devices, registry CSV), environment (weather, air, outages), models (device
physics, registers), faults (fault mix, malformed payloads), payloads (plain JSON and SenML encoders), stream (one
device's messages), publisher (paho pool with an outstanding-message window), truth (ground truth), run (pacing).
"""
