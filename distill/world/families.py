"""The problem families: one small function each, drawing a problem with a `Builder`.

Forward families compute the answer from the givens; EoT-natural families (`times_as_many`,
`more_than`, `tickets`, `age_equation`) ask for an unknown and also state the equation system a
teacher would write for it. Every step value is a positive integer (the builder redraws otherwise).
"""
from __future__ import annotations

from collections.abc import Callable

from distill.world.builder import Builder
from distill.world.problem import Problem

STATIONERY = ["pens", "pencils", "notebooks", "erasers", "markers", "folders"]
TREATS = ["cookies", "muffins", "cupcakes", "brownies", "bagels", "tarts"]
PRODUCE = ["apples", "oranges", "pears", "peaches", "plums", "lemons"]
GOODS = ["toys", "bottles", "chairs", "shirts", "candles", "bracelets"]
WEAR = [("jacket", "jackets"), ("lamp", "lamps"), ("backpack", "backpacks"), ("board game", "board games")]
GOALS = ["bike", "guitar", "tablet", "telescope", "skateboard", "camera"]
CHORES = [("paints", "fences"), ("builds", "birdhouses"), ("packs", "boxes"), ("knits", "scarves")]
VEHICLES = ["train", "bus", "truck", "car", "ferry"]
PAIRS = [("meals", "packages", "delivers", "deliver"), ("letters", "postcards", "writes", "write"),
         ("roses", "tulips", "plants", "plant"), ("cats", "dogs", "feeds", "feed"), ("novels", "comics", "reads", "read")]
SHOWS = ["concert", "school play", "museum tour", "magic show", "puppet show"]


def shopping(b: Builder) -> Problem:
    b.people()
    b.context(item=b.pick(STATIONERY), item2=b.pick(TREATS))
    b.fact(["{who} buys {packs} packs of {item}.", "{who} picks up {packs} packs of {item} at the store."],
           packs=b.int(2, 9))
    b.fact(["Each pack costs ${pack_price}.", "A pack of {item} sells for ${pack_price}."], pack_price=b.int(2, 12))
    b.fact(["{He} also buys {treats} {item2} at ${treat_price} each.",
            "{He} adds {treats} {item2} that cost ${treat_price} apiece."], treats=b.int(2, 8), treat_price=b.int(1, 6))
    b.fact(["{He} pays with a ${bill} bill.", "{He} hands the cashier ${bill}."], bill=b.pick([50, 100]))
    b.step("cost_of_packs", "packs * pack_price", ["The packs cost {calc} dollars.", "{who} spends {calc} dollars on {item}."],
           "Cost of the {item}")
    b.step("cost_of_treats", "treats * treat_price", ["The {item2} cost {calc} dollars.", "The {item2} come to {calc} dollars."],
           "Cost of the {item2}")
    b.step("total_cost", "cost_of_packs + cost_of_treats", ["Altogether {he} spends {calc} dollars.", "The total is {calc} dollars."],
           "Total cost")
    b.step("change", "bill - total_cost", ["So {he} gets {calc} dollars back.", "The change is {calc} dollars."],
           "Change {he} receives")
    return b.ask("change", ["How much change does {who} get?", "How many dollars does {who} get back?"])


def rates(b: Builder) -> Problem:
    b.context(goods=b.pick(GOODS))
    b.fact(["A machine makes {per_hour} {goods} per hour.", "A factory machine produces {per_hour} {goods} every hour."],
           per_hour=b.int(4, 30))
    b.fact(["It runs {hours} hours a day for {days} days.", "It works {hours} hours each day, {days} days in a row."],
           hours=b.int(2, 10), days=b.int(2, 7))
    b.fact(["The {goods} are packed in boxes of {box}.", "Each box holds {box} {goods}."], box=b.pick([2, 3, 4, 5, 6, 8, 10]))
    b.step("per_day", "per_hour * hours", ["Each day it makes {calc} {goods}.", "In one day that is {calc} {goods}."],
           "{goods} made per day")
    b.step("total_made", "per_day * days", ["Over all the days it makes {calc} {goods}.", "In total that is {calc} {goods}."],
           "{goods} made in total")
    b.step("boxes", "total_made / box", ["That fills {calc} boxes.", "So there are {calc} boxes."], "Number of boxes")
    return b.ask("boxes", ["How many boxes are filled?", "How many boxes of {goods} are there?"])


def ages(b: Builder) -> Problem:
    b.people(2)
    b.fact(["{who2} is {child_age} years old.", "{who2} has just turned {child_age}."], child_age=b.int(3, 15))
    b.fact(["{who} is {times} times as old as {who2}.", "{who}'s age is {times} times {who2}'s age."], times=b.int(2, 5))
    b.fact(["Think of the time {years} years from now.", "Look {years} years ahead."], years=b.int(2, 12))
    b.step("age_now", "times * child_age", ["{who} is {calc} years old now.", "Now {who} is {calc}."], "{who}'s age now")
    b.step("age_later", "age_now + years", ["Then {who} will be {calc}.", "{who} will be {calc} years old."],
           "{who}'s age later")
    b.step("child_later", "child_age + years", ["{who2} will be {calc}.", "{who2} will be {calc} then."], "{who2}'s age later")
    b.step("sum_of_ages", "age_later + child_later", ["Together they will be {calc} years old.", "Their ages add up to {calc}."],
           "Sum of their ages")
    return b.ask("sum_of_ages", ["What is the sum of their ages then?", "How old will they be together?"])


def percentages(b: Builder) -> Problem:
    b.people()
    item, items = b.pick(WEAR)
    b.context(item=item, items=items)
    b.fact(["A {item} costs ${price}.", "The price of a {item} is ${price}."], price=b.int(2, 30) * 10)
    b.fact(["The store takes {percent}% off.", "There is a {percent}% discount on it."], percent=b.pick([10, 20, 25, 30, 40, 50]))
    b.fact(["{who} buys {count} {items} on sale.", "{who} gets {count} discounted {items}."], count=b.int(2, 6))
    b.step("discount", "price * percent / 100", ["The discount is {calc} dollars.", "{calc} dollars come off."],
           "Discount on one {item}")
    b.step("sale_price", "price - discount", ["One {item} now costs {calc} dollars.", "The sale price is {calc} dollars."],
           "Sale price")
    b.step("total_paid", "sale_price * count", ["{who} pays {calc} dollars.", "For all of them {he} pays {calc} dollars."],
           "Total paid")
    return b.ask("total_paid", ["How much does {who} pay?", "How many dollars does {who} spend?"])


def fractions(b: Builder) -> Problem:
    b.people()
    b.context(food=b.pick(TREATS))
    den = b.pick([2, 3, 4, 5, 6])
    b.fact(["{who} baked {baked} {food}.", "{who} made a batch of {baked} {food}."], baked=den * b.int(2, 12))
    b.fact(["{He} sold {num}/{den} of them.", "{num}/{den} of the {food} were sold."], num=b.int(1, den - 1), den=den)
    b.fact(["{He} gave 1/{gift_den} of the rest to friends.", "A 1/{gift_den} share of the remaining {food} went to friends."],
           gift_den=b.pick([2, 3, 4]))
    b.step("sold", "baked * num / den", ["{He} sold {calc} {food}.", "{calc} {food} were sold."], "{food} sold")
    b.step("rest", "baked - sold", ["{calc} {food} were left.", "That leaves {calc}."], "{food} left after the sale")
    b.step("given", "rest / gift_den", ["{He} gave away {calc}.", "Friends got {calc} {food}."], "{food} given to friends")
    b.step("kept", "rest - given", ["{He} keeps {calc} {food}.", "So {calc} {food} remain."], "{food} kept")
    return b.ask("kept", ["How many {food} does {who} keep?", "How many {food} are left?"])


def work(b: Builder) -> Problem:
    b.people(2)
    verb, things = b.pick(CHORES)
    b.context(verb=verb, things=things)
    rate1, rate2, alone_days = b.int(2, 9), b.int(2, 9), b.int(2, 4)
    b.fact(["{who} {verb} {rate1} {things} a day.", "Each day {who} {verb} {rate1} {things}."], rate1=rate1)
    b.fact(["{who2} {verb} {rate2} {things} a day.", "{who2} manages {rate2} {things} per day."], rate2=rate2)
    b.fact(["They need {job} {things}. {who} works alone for the first {alone_days} days, then they work together.",
            "The job is {job} {things}. {who} starts alone for {alone_days} days before {who2} joins."],
           job=rate1 * alone_days + (rate1 + rate2) * b.int(1, 8), alone_days=alone_days)
    b.step("done_alone", "rate1 * alone_days", ["Alone, {who} finishes {calc} {things}.", "First {calc} {things} get done."],
           "{things} done alone")
    b.step("remaining", "job - done_alone", ["{calc} {things} remain.", "That leaves {calc} {things}."], "{things} remaining")
    b.step("together_rate", "rate1 + rate2", ["Together they do {calc} {things} a day.", "Their joint rate is {calc} a day."],
           "Joint rate per day")
    b.step("days_together", "remaining / together_rate", ["They need {calc} more days.", "That takes {calc} days together."],
           "Days working together")
    return b.ask("days_together", ["How many days do they work together?", "For how many days do they work side by side?"])


def distance(b: Builder) -> Problem:
    b.context(vehicle=b.pick(VEHICLES))
    b.fact(["A {vehicle} travels at {speed1} miles per hour for {hours1} hours.",
            "A {vehicle} goes {speed1} mph for {hours1} hours."], speed1=b.int(3, 9) * 10, hours1=b.int(1, 5))
    b.fact(["Then it slows to {speed2} miles per hour for {hours2} hours.",
            "After that it drives {speed2} mph for another {hours2} hours."], speed2=b.int(2, 6) * 10, hours2=b.int(1, 4))
    b.step("first_leg", "speed1 * hours1", ["First it covers {calc} miles.", "The first part is {calc} miles."],
           "Distance of the first part")
    b.step("second_leg", "speed2 * hours2", ["Then it covers {calc} miles.", "The second part is {calc} miles."],
           "Distance of the second part")
    b.step("total_distance", "first_leg + second_leg", ["In all it travels {calc} miles.", "The trip is {calc} miles."],
           "Total distance")
    return b.ask("total_distance", ["How far does the {vehicle} travel?", "How many miles does the {vehicle} cover in total?"])


def savings(b: Builder) -> Problem:
    b.people()
    b.context(goal=b.pick(GOALS))
    saved, earn, spend = b.int(1, 20) * 5, b.int(4, 12) * 5, b.int(1, 5) * 5
    b.require(earn > spend)
    b.fact(["{who} wants a {goal} that costs ${price}.", "A {goal} costs ${price}, and {who} wants one."],
           price=saved + (earn - spend) * b.int(2, 12))
    b.fact(["{He} already has ${saved}.", "{He} has saved ${saved} so far."], saved=saved)
    b.fact(["{He} earns ${earn} a week and spends ${spend} of it.", "Each week {he} makes ${earn} and uses ${spend}."],
           earn=earn, spend=spend)
    b.step("still_needed", "price - saved", ["{He} still needs {calc} dollars.", "{calc} dollars are missing."],
           "Money still needed")
    b.step("saved_per_week", "earn - spend", ["{He} saves {calc} dollars a week.", "Each week {calc} dollars are put aside."],
           "Savings per week")
    b.step("weeks", "still_needed / saved_per_week", ["So it takes {calc} weeks.", "{He} needs {calc} weeks."], "Weeks needed")
    return b.ask("weeks", ["How many weeks until {who} can buy the {goal}?", "How many weeks must {who} save?"])


def recipes(b: Builder) -> Problem:
    b.people()
    b.context(food=b.pick(TREATS))
    batch = b.int(6, 24)
    b.fact(["A recipe makes {batch} {food} with {flour} cups of flour and {sugar} cups of sugar.",
            "One batch of {batch} {food} takes {flour} cups of flour and {sugar} cups of sugar."],
           batch=batch, flour=b.int(2, 6), sugar=b.int(1, 4))
    b.fact(["{who} wants to make {wanted} {food}.", "{who} needs {wanted} {food} for a party."], wanted=batch * b.int(2, 6))
    b.step("batches", "wanted / batch", ["{He} needs {calc} batches.", "That is {calc} batches."], "Number of batches")
    b.step("cups_per_batch", "flour + sugar", ["Each batch uses {calc} cups.", "One batch takes {calc} cups of flour and sugar."],
           "Cups per batch")
    b.step("total_cups", "batches * cups_per_batch", ["In all {he} uses {calc} cups.", "Altogether that is {calc} cups."],
           "Total cups")
    return b.ask("total_cups", ["How many cups of flour and sugar does {who} need?", "How many cups does {who} use in all?"])


def sharing(b: Builder) -> Problem:
    b.people()
    b.context(item=b.pick(STATIONERY))
    b.fact(["{who} has {boxes} boxes with {per_box} {item} in each.", "There are {boxes} boxes of {per_box} {item} on {who}'s desk."],
           boxes=b.int(2, 9), per_box=b.int(6, 30))
    b.fact(["{He} keeps {kept} for {himself}.",
            "{He} sets aside {kept} {item}."], kept=b.int(1, 12))
    b.fact(["{He} shares the rest equally among {kids} students.", "The rest go equally to {kids} students."], kids=b.int(2, 12))
    b.step("total_items", "boxes * per_box", ["{He} has {calc} {item}.", "There are {calc} {item}."], "Total {item}")
    b.step("shared", "total_items - kept", ["{calc} {item} are shared.", "{He} gives out {calc}."], "{item} shared")
    b.step("each", "shared / kids", ["Each student gets {calc}.", "That is {calc} {item} per student."], "{item} per student")
    return b.ask("each", ["How many {item} does each student get?", "How many {item} per student?"])


def times_as_many(b: Builder) -> Problem:
    b.people()
    few, many, verb, base = b.pick(PAIRS)
    b.context(few=few, many=many, verb=verb, base=base)
    ratio = b.int(2, 9)
    b.fact(["{who} {verb} {ratio} times as many {many} as {few}.", "For every one of the {few}, {who} {verb} {ratio} {many}."],
           ratio=ratio)
    b.fact(["{He} {verb} {total} {few} and {many} in total.", "Together that is {total} {few} and {many}."],
           total=b.int(2, 20) * (ratio + 1))
    b.step("parts", "ratio + 1", ["One share of {few} and {ratio} shares of {many} make {calc} shares.",
                                  "There are {calc} equal shares."], "Shares in total")
    b.step(few, "total / parts", ["So there are {calc} {few}.", "Each share is {calc} {few}."], "Number of {few}")
    b.equation("Assume {who} {verb} x {few}", f"{few} = x")
    b.equation("{He} {verb} {ratio} times as many {many} as {few}", f"{many} = ratio * {few}")
    b.equation("{He} {verb} {total} {few} and {many} combined", f"{many} + {few} = total")
    return b.ask(few, ["How many {few} does {who} {base}?",
                       "How many of them are {few}?"])


def more_than(b: Builder) -> Problem:
    b.people(2)
    b.context(things=b.pick(["marbles", "stickers", "stamps", "shells", "coins"]))
    diff = b.int(2, 30)
    b.fact(["{who} has {diff} more {things} than {who2}.", "{who2} has {diff} fewer {things} than {who}."], diff=diff)
    b.fact(["Together they have {total} {things}.", "They own {total} {things} in all."], total=diff + 2 * b.int(3, 40))
    b.step("without_extra", "total - diff", ["Without the extra, there are {calc} {things}.", "Taking away the difference leaves {calc}."],
           "Total without the difference")
    b.step("second_share", "without_extra / 2", ["{who2} has {calc} {things}.", "Half of that, {calc}, is {who2}'s."],
           "{who2}'s {things}")
    b.step("first_share", "second_share + diff", ["{who} has {calc} {things}.", "So {who} owns {calc}."], "{who}'s {things}")
    b.equation("Let {who2} have x {things}", "second_share = x")
    b.equation("{who} has {diff} more than {who2}", "first_share = second_share + diff")
    b.equation("Together they have {total}", "first_share + second_share = total")
    return b.ask("first_share", ["How many {things} does {who} have?", "How many {things} are {who}'s?"])


def tickets(b: Builder) -> Problem:
    b.context(show=b.pick(SHOWS))
    adult, child = b.int(6, 15), b.int(2, 5)
    b.fact(["Tickets for the {show} cost ${adult_price} for adults and ${child_price} for children.",
            "At the {show}, an adult ticket is ${adult_price} and a child ticket is ${child_price}."],
           adult_price=adult, child_price=child)
    adults, kids = b.int(2, 40), b.int(2, 40)
    b.fact(["{sold} tickets were sold for ${revenue} in total.", "They sold {sold} tickets and took in ${revenue}."],
           sold=adults + kids, revenue=adults * adult + kids * child)
    b.step("if_all_children", "sold * child_price", ["If all were child tickets they would bring {calc} dollars.",
                                                     "At the child price the tickets make {calc} dollars."],
           "Revenue if every ticket were a child's")
    b.step("extra", "revenue - if_all_children", ["The extra {calc} dollars come from adults.", "Adults bring {calc} dollars more."],
           "Extra from adult tickets")
    b.step("price_gap", "adult_price - child_price", ["Each adult ticket adds {calc} dollars.", "The price gap is {calc} dollars."],
           "Price gap")
    b.step("adult_tickets", "extra / price_gap", ["So {calc} adult tickets were sold.", "There were {calc} adult tickets."],
           "Adult tickets")
    b.equation("Let x be the adult tickets", "adult_tickets = x")
    b.equation("Let y be the child tickets", "child_tickets = y")
    b.equation("{sold} tickets were sold", "adult_tickets + child_tickets = sold")
    b.equation("They made ${revenue}", "adult_price * adult_tickets + child_price * child_tickets = revenue")
    return b.ask("adult_tickets", ["How many adult tickets were sold?", "How many adults bought tickets?"])


def age_equation(b: Builder) -> Problem:
    b.people()
    age, back, k = b.int(10, 40), b.int(2, 8), b.int(2, 3)
    b.require(k * (age - back) - age > 0)
    b.fact(["{ahead} years from now, {who} will be {times} times as old as {he} was {back} years ago.",
            "In {ahead} years {who}'s age will be {times} times {his} age {back} years ago."],
           ahead=k * (age - back) - age, times=k, back=back)
    b.step("scaled_back", "times * back", ["Scaling the years back gives {calc}.", "First, {calc}."], "Scaled years back")
    b.step("top", "ahead + scaled_back", ["Adding the years ahead gives {calc}.", "Then {calc}."], "Sum")
    b.step("factor", "times - 1", ["Comparing the two ages leaves {calc} times the age.", "The factor is {calc}."], "Factor")
    b.step("age_now", "top / factor", ["So {who} is {calc} years old.", "{who}'s age is {calc}."], "Age now")
    b.equation("Let {who}'s age now be x", "age_now = x")
    b.equation("Age {back} years ago", "age_before = age_now - back")
    b.equation("In {ahead} years {he} will be {times} times that age", "age_now + ahead = times * age_before")
    return b.ask("age_now", ["How old is {who} now?", "What is {who}'s age today?"])


FAMILIES: dict[str, Callable[[Builder], Problem]] = {
    f.__name__: f
    for f in (shopping, rates, ages, percentages, fractions, work, distance, savings, recipes, sharing,
              times_as_many, more_than, tickets, age_equation)
}
EOT_NATURAL = {"times_as_many", "more_than", "tickets", "age_equation"}
