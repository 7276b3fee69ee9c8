from twisted.application.service import ServiceMaker

spartan = ServiceMaker("Spartan", "spartan.tap", "A chat server for teams, classes and LANs.", "spartan")
